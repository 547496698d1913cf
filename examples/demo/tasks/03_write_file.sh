#!/usr/bin/env bash
# Writes a file into its working directory: the workspace (~/parallelr/workspace by default).
set -eu
echo "written by parallelr demo task 03 at $(date '+%H:%M:%S')" > parallelr_demo.txt
echo "wrote $(pwd)/parallelr_demo.txt"
