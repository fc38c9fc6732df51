#!/usr/bin/env bash
# Soak test for issue 11: what moat lists as banned is exactly what the
# kernel drops, always.
#
# Builds moat and the soak driver (bench/soak), makes a network namespace of
# its own (moat-soak-PID) and runs `moat run` inside it with the nftables
# backend, so the table lives in that namespace only. For DURATION, four
# writers append failures to four jails' logs (sshd lines for two jails, one
# of them banning IPv6 by /64, nginx error.log lines, an inline filter with
# ipv6_prefix 56), keeping an exact ledger, and rotate the logs under
# themselves (rename + create, copytruncate); a few manual bans and unbans a
# second overlap on purpose (prefixes in prefixes, addresses in prefixes,
# unbans that lift the prefixes around an address, /48, /64, short --for
# bans); the daemon gets SIGHUP about every 15 s (the config rewritten, the
# web jail's ports changed now and then), `nft flush ruleset` about every
# 45 s and kill -9 + restart about every 2.5 min (at least once). One manual
# ban of the sshd jail (whose configuration never changes) is polled in the
# kernel as fast as possible across at least 50 reloads (a burst of SIGHUPs
# near the end): it must never be missing.
#
# At the end it waits for the daemon to catch up and checks: (1) `moat bans
# --json` lists exactly what the ledger says, (2) the kernel's sets cover
# every listed ban (nft -j list set, and nft get element on each address,
# or a prefix's first and last address) and keep it as long as moat says,
# and nothing else, (3) addresses below maxretry and just outside banned
# prefixes are not covered. It prints a summary and exits 1 on any
# discrepancy, with the end of the daemon's log.
#
#   bash bench/soak.sh [DURATION]     (a Go duration, default 2m; needs root)
#
# It finishes within DURATION plus about 30 s (plus the builds), and always
# removes its namespace, processes and temporary directory (SOAK_KEEP=1
# keeps the directory, with the logs and the daemon's log, for a look).
# SOAK_SEED=N repeats a run's random choices.
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-2m}
if [ "$(id -u)" != 0 ]; then
  echo "soak.sh: needs root (a network namespace and nftables)" >&2
  exit 2
fi
for c in ip nft go; do
  command -v "$c" >/dev/null || { echo "soak.sh: $c not found" >&2; exit 2; }
done

ns=moat-soak-$$
tmp=$(mktemp -d /tmp/moat-soak.XXXXXX)
driver=
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$driver" ] && kill -0 "$driver" 2>/dev/null; then
    kill -TERM "$driver" 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      kill -0 "$driver" 2>/dev/null || break
      sleep 0.5
    done
    kill -KILL "$driver" 2>/dev/null || true
  fi
  # Whatever still runs in our namespace is ours (the daemon, an nft).
  if ip netns list 2>/dev/null | grep -qw "$ns"; then
    for pid in $(ip netns pids "$ns" 2>/dev/null); do
      kill -KILL "$pid" 2>/dev/null || true
    done
    ip netns del "$ns" 2>/dev/null || true
  fi
  if [ "${SOAK_KEEP:-0}" = 1 ]; then
    echo "soak.sh: kept $tmp"
  else
    rm -rf "$tmp"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "soak.sh: building moat and the soak driver"
go build -o "$tmp/moat" ./cmd/moat
go build -o "$tmp/soak" ./bench/soak
ip netns add "$ns"
ip netns exec "$ns" ip link set lo up

t0=$(date +%s)
"$tmp/soak" -moat "$tmp/moat" -dir "$tmp" -netns "$ns" -duration "$dur" -seed "${SOAK_SEED:-0}" &
driver=$!
rc=0
wait "$driver" || rc=$?
driver=
echo "soak.sh: finished in $(( $(date +%s) - t0 )) s, exit status $rc"
exit "$rc"
