#!/usr/bin/env bash
# A little CPU work in pure bash: the sum of 1..20000.
total=0
for ((i = 1; i <= 20000; i++)); do
    total=$((total + i))
done
echo "sum of 1..20000 = $total"
