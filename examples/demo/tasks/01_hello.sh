#!/usr/bin/env bash
# Says where and when it ran: every task gets its own process, started by parallelr.
echo "Hello from $(uname -n) at $(date '+%Y-%m-%d %H:%M:%S')"
