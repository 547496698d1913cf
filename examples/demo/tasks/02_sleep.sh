#!/usr/bin/env bash
# Takes one second: the other tasks run next to it, so the whole batch takes about as long as this one.
echo "sleeping 1 s"
sleep 1
echo "awake again"
