#!/usr/bin/env bash
# Shows what a task sees: its working directory and the PID the CSV records in process_id.
echo "working directory: $(pwd)"
echo "my PID: $$"
echo "kernel: $(uname -sr)"
