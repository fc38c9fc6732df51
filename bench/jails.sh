#!/usr/bin/env bash
# moat regex against fail2ban-regex for ten common stock jails on the same
# generated logs of a mail, FTP, SSH and web host (bench/genmixed): checks
# that `-o ip` prints the same lines for every filter, and reports each
# tool's rate summed over the ten filters and the ratio, per filter and in
# total. The "mixed log" is five files, because fail2ban's filters read one
# format each: a syslog shared by sshd, postfix, dovecot, vsftpd and proftpd
# (with CRON, sudo and logind noise), nginx's error.log (nginx-http-auth,
# nginx-limit-req), nginx's access.log (nginx-botsearch), Apache's error.log
# (apache-auth) and fail2ban.log (recidive). Each filter reads its own file;
# its line count is that file's.
#
# Then, unless --no-daemon, moat's daemon runs the ten jails together
# (backend none, a YAML config with the ten stock filters) and reads all
# files in one pass; the time until its moat_lines_read_total counters reach
# the lines of every jail's files is reported as a third rate.
#
#   bash bench/jails.sh [LINES] [--no-daemon]   (LINES in all files, default 1000000;
#                                               needs fail2ban installed)
set -euo pipefail
cd "$(dirname "$0")/.."
lines=1000000 daemon=1
for a in "$@"; do
  case $a in
    --no-daemon) daemon=0 ;;
    *) lines=$a ;;
  esac
done
command -v fail2ban-regex >/dev/null || { echo "fail2ban-regex is not installed (apt-get install fail2ban)"; exit 1; }
filters=/etc/fail2ban/filter.d
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/moat" ./cmd/moat
go run ./bench/genmixed -dir "$tmp" -lines "$lines" >"$tmp/files"

# cpu runs a command with its standard output to $1 and prints "wall cpu"
# in seconds (cpu is the user and system time of the command and its
# children, from the times builtin of the subshell that ran it).
cpu() {
  local out=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  ("$@" >"$out"; times >"$out.times")
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" -v c="$(tail -1 "$out.times")" 'BEGIN {
    split(c, f, " "); s = 0
    for (i = 1; i <= 2; i++) { split(f[i], ms, "m"); s += ms[1] * 60 + ms[2] }
    printf "%.3f %.3f\n", b-a, s }'
}

printf '%-16s %-17s %8s %8s %12s %12s %7s %12s %12s %7s  %s\n' \
  filter log lines failures "f2b lines/s" "moat lines/s" ratio "f2b l/cpu-s" "moat l/cpu-s" ratio "-o ip"
status=0
: >"$tmp/rows"
while read -r path n names; do
  for f in ${names//,/ }; do
    spec="$filters/$f.conf"
    read -r fw fc < <(cpu "$tmp/$f.f2b" fail2ban-regex -o ip "$path" "$spec")
    read -r mw mc < <(cpu "$tmp/$f.moat" "$tmp/moat" regex -o ip "$path" "$spec")
    k=$(wc -l <"$tmp/$f.f2b")
    same=identical
    if ! cmp -s "$tmp/$f.f2b" "$tmp/$f.moat"; then
      same="DIFFERENT ($(diff "$tmp/$f.moat" "$tmp/$f.f2b" | grep -c '^[<>]') lines)"
      status=1
    fi
    echo "$f $(basename "$path") $n $k $fw $mw $fc $mc $same" >>"$tmp/rows"
  done
done <"$tmp/files"
awk '{
  same = $9; for (i = 10; i <= NF; i++) same = same " " $i
  printf "%-16s %-17s %8d %8d %12.0f %12.0f %6.1fx %12.0f %12.0f %6.1fx  %s\n",
    $1, $2, $3, $4, $3/$5, $3/$6, $5/$6, $3/$7, $3/$8, $7/$8, same
  n += $3; k += $4; fw += $5; mw += $6; fc += $7; mc += $8 }
  END { printf "%-16s %-17s %8d %8d %12.0f %12.0f %6.1fx %12.0f %12.0f %6.1fx\n",
    "ten filters", "(sum)", n, k, n/fw, n/mw, fw/mw, n/fc, n/mc, fc/mc
    printf "\nfail2ban-regex: %d lines in %.1f s (%.0f lines/s); moat regex: %.1f s (%.0f lines/s); moat is %.1fx faster (%.1fx per CPU second)\n",
      n, fw, n/fw, mw, n/mw, fw/mw, fc/mc }' "$tmp/rows"

if [ "$daemon" = 1 ]; then
  port=$((20000 + RANDOM % 20000))
  {
    echo "state_dir: $tmp/state"
    echo "socket: $tmp/moat.sock"
    echo "firewall: {backend: none}"
    echo "metrics: {listen: 127.0.0.1:$port}"
    echo "jails:"
    while read -r path n names; do
      for f in ${names//,/ }; do
        # maxretry high: the pass measures reading and matching, not
        # making (and persisting) bans.
        printf '  %s:\n    filter: %s\n    logpath: %s\n    maxretry: 1000000\n    findtime: 1h\n    bantime: 1h\n' \
          "$f" "$filters/$f.conf" "$path"
      done
    done <"$tmp/files"
  } >"$tmp/moat.yaml"
  want=$(awk '{ split($3, f, ","); t += $2 * length(f) } END { print t }' "$tmp/files")
  read_lines() {
    { curl -fsS "http://127.0.0.1:$port/metrics" 2>/dev/null || true; } |
      awk '/^moat_lines_read_total/ { t += $2 } END { printf "%d\n", t }'
  }
  t0=$(date +%s.%N)
  "$tmp/moat" run --config "$tmp/moat.yaml" >"$tmp/daemon.log" 2>&1 &
  pid=$!
  got=0
  while [ "$got" -lt "$want" ]; do
    kill -0 "$pid" 2>/dev/null || { echo "moat run exited:"; cat "$tmp/daemon.log"; exit 1; }
    sleep 0.05
    got=$(read_lines)
  done
  t1=$(date +%s.%N)
  ticks=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
  kill "$pid"; wait "$pid" || true
  awk -v n="$want" -v a="$t0" -v b="$t1" -v c="$ticks" -v hz="$(getconf CLK_TCK)" \
    -v fw="$(awk '{ s += $5 } END { print s }' "$tmp/rows")" \
    -v fc="$(awk '{ s += $7 } END { print s }' "$tmp/rows")" 'BEGIN {
    printf "moat run, ten jails in one daemon: %d jail-lines in %.1f s from start, %.1f CPU s (%.0f lines/s, %.0f lines/cpu-s): %.1fx fail2ban-regex one filter at a time (%.1fx per CPU second)\n",
      n, b-a, c/hz, n/(b-a), n/(c/hz), fw/(b-a), fc/(c/hz) }'
fi
exit $status
