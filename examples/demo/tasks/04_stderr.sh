#!/usr/bin/env bash
# Prints to stderr and still succeeds: both streams end up in the task output log.
echo "this line goes to stdout"
echo "this line goes to stderr" >&2
exit 0
