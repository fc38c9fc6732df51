#!/usr/bin/env bash
# Measures the figures the README quotes. Run from anywhere; root for the
# ban-latency benchmark (it runs the daemon in a network namespace).
#
#   bash bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== sshd filter on a 1M-line mixed auth.log, against fail2ban-regex on the same file"
go run ./bench/filterrate

echo "== sshd filter, in-memory (go test -bench)"
go test -run '^$' -bench 'BenchmarkSSHD1M$' -benchtime 3x ./filters | grep -E 'Benchmark|ok'

if [ "$(id -u)" -eq 0 ]; then
  echo "== ban latency: line appended → element in the kernel set (200 bans)"
  go test -run '^$' -bench 'BenchmarkBanLatency$' -benchtime 1x ./cmd/moat | grep -E 'Benchmark|ok'
else
  echo "== ban latency: skipped (needs root)"
fi

echo "== daemon RSS: idle with 10 jails, then after failures from 1M distinct addresses"
go test -run '^$' -bench 'BenchmarkRSS$' -benchtime 1x -timeout 20m ./cmd/moat | grep -E 'Benchmark|ok'
