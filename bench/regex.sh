#!/usr/bin/env bash
# moat regex against fail2ban-regex on the same generated auth.log, with
# fail2ban's stock sshd filter in every mode: checks that `-o ip` prints the
# same lines, and reports both rates and the ratio.
#
#   bash bench/regex.sh [LINES]      (default 1000000; needs fail2ban installed)
set -euo pipefail
cd "$(dirname "$0")/.."
lines=${1:-1000000}
command -v fail2ban-regex >/dev/null || { echo "fail2ban-regex is not installed (apt-get install fail2ban)"; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/moat" ./cmd/moat
go run ./bench/genlog -lines "$lines" >"$tmp/auth.log"

now() { date +%s.%N; }
for mode in normal ddos aggressive extra; do
  filter="/etc/fail2ban/filter.d/sshd.conf[mode=$mode]"
  t0=$(now); "$tmp/moat" regex -o ip "$tmp/auth.log" "$filter" >"$tmp/moat.out"; t1=$(now)
  fail2ban-regex -o ip "$tmp/auth.log" "$filter" >"$tmp/f2b.out"; t2=$(now)
  same=identical
  cmp -s "$tmp/moat.out" "$tmp/f2b.out" || same="DIFFERENT ($(diff "$tmp/moat.out" "$tmp/f2b.out" | grep -c '^[<>]') lines differ)"
  awk -v n="$lines" -v a="$t0" -v b="$t1" -v c="$t2" -v m="$mode" -v s="$same" -v k="$(wc -l <"$tmp/moat.out")" 'BEGIN {
    printf "sshd[mode=%s]: %d lines, %d failures; moat regex %.0f lines/s, fail2ban-regex %.0f lines/s, ratio %.1fx; -o ip %s\n",
      m, n, k, n/(b-a), n/(c-b), (c-b)/(b-a), s }'
done
