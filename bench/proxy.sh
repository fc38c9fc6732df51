#!/usr/bin/env bash
# moat's reverse proxy against nginx as a reverse proxy, in one run, on
# 127.0.0.1, in front of one upstream (nginx answering a 13-byte body):
#
#   direct          wrk straight to the upstream (the ceiling)
#   go-rp           reference: the bare net/http reverse proxy
#                   (bench/proxy/gorp, with a BufferPool), nothing of moat's
#   go-rp-nopool    the same without a BufferPool
#   go-rp-sync      go-rp with a prototype upstream transport that does the
#                   round trip in the request's goroutine (bench/proxy/gorp)
#   moat            moat run, tls off, one route with a rate limit that never
#                   triggers (1000000/s, burst 1000000), no access log
#   moat+log        the same with the JSON access log on
#   nginx           nginx proxy_pass with limit_req keyed by
#                   $binary_remote_addr (a rate that never triggers) and
#                   keep-alive to the upstream
#   nginx+log       the same with nginx's access log on
#   moat-https      moat, tls mode files, a self-signed P-256 certificate
#                   made here by openssl
#   nginx-https     nginx with the same certificate
#
# Each row is wrk (2 threads, CONNS connections, keep-alive, --latency)
# for DURATION seconds after a one-second warm-up. The proxy's CPU time per
# request is read from /proc (user+system of the proxy's processes,
# nginx's workers included) while wrk runs. The table gives requests/s,
# p50 and p99 latency, errors (non-2xx responses, socket errors) and the
# ratios moat/nginx.
#
# Then the memory of a moat that trusts 127.0.0.1 as a proxy, with a rate
# limit on (100/s, burst 100, never reached), before and after CLIENTS
# requests (default 1000000) from as many distinct X-Forwarded-For
# addresses (bench/proxy/flood: 198.18.0.0/15, then distinct /64s of
# 2001:db8::/32), read as VmRSS and VmHWM from /proc/PID/status, with the
# Go heap from moat's metrics. Twice: with the default max_keys (the
# limiter then evicts idle clients past its cap), and with max_keys at
# twice CLIENTS, so that every client keeps its bucket.
#
# Every process started here (nginx, moat) is stopped on exit. moat's
# firewall backend is none, and its proxy jail ignores the benchmark ranges
# (loopback is never banned anyway).
#
#   bash bench/proxy.sh               (needs nginx, wrk, openssl, curl:
#                                      apt-get install nginx wrk)
#   QUICK=1 bash bench/proxy.sh       smoke test: 3 s per row, 100000 clients
#   OUT=FILE bash bench/proxy.sh      also write the summary table to FILE
#   DURATION=15 CONNS=64 CLIENTS=1000000 THREADS=2 change the defaults
set -euo pipefail
cd "$(dirname "$0")/.."

for c in nginx wrk openssl curl ss go; do
  command -v "$c" >/dev/null || { echo "proxy.sh: $c is not installed (apt-get install nginx wrk openssl curl iproute2)" >&2; exit 1; }
done
if [ "${QUICK:-0}" = 1 ]; then
  dur=${DURATION:-3} clients=${CLIENTS:-100000} warm=0
else
  dur=${DURATION:-12} clients=${CLIENTS:-1000000} warm=1
fi
conns=${CONNS:-64} threads=${THREADS:-2}

tmp=$(mktemp -d)
chmod 755 "$tmp" # nginx's workers run as nobody
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do
    kill "$p" 2>/dev/null || true
  done
  for p in "${pids[@]}"; do
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# stop ends one process this script started and forgets it.
stop() {
  local p=$1 keep=() q
  kill "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  for q in "${pids[@]}"; do
    [ "$q" = "$p" ] || keep+=("$q")
  done
  pids=("${keep[@]}")
}

# freeport prints a TCP port nothing listens on now and that this script
# has not handed out yet.
used=" "
freeport() {
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    case $used in *" $p "*) continue ;; esac
    if [ -z "$(ss -Htln "sport = :$p")" ]; then
      used="$used$p "
      echo "$p"
      return
    fi
  done
}

# ready waits until URL answers with the upstream's body.
ready() {
  local url=$1 i body
  for i in $(seq 100); do
    if body=$(curl -ksS --max-time 1 "$url" 2>/dev/null) && [ "$body" = "hello, world" ]; then
      return 0
    fi
    sleep 0.1
  done
  echo "proxy.sh: $url does not answer with the upstream's body" >&2
  return 1
}

# ticks prints the user+system clock ticks of the processes given and
# their children (nginx's workers).
ticks() {
  local p k t=0
  for p in "$@"; do
    for k in $p $(cat "/proc/$p/task/$p/children" 2>/dev/null); do
      t=$((t + $(awk '{ print $14 + $15 }' "/proc/$k/stat" 2>/dev/null || echo 0)))
    done
  done
  echo "$t"
}

echo "building moat, the flood client and gorp" >&2
go build -o "$tmp/moat" ./cmd/moat
go build -o "$tmp/flood" ./bench/proxy/flood
go build -o "$tmp/gorp" ./bench/proxy/gorp

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=bench.example -addext "subjectAltName=DNS:bench.example,IP:127.0.0.1" \
  -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null

# nginx NAME CONFIG-BODY starts an nginx with its own prefix under $tmp and
# prints its master's pid.
start_nginx() {
  local name=$1 body=$2 dir="$tmp/$1"
  mkdir -p "$dir/logs"
  cat >"$dir/nginx.conf" <<EOF
worker_processes auto;
daemon off;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
$body
}
EOF
  nginx -p "$dir" -e "$dir/logs/error.log" -c "$dir/nginx.conf" >"$dir/out.log" 2>&1 &
  pids+=($!)
  last=$!
}

up=$(freeport)
start_nginx upstream "  server {
    listen 127.0.0.1:$up;
    location / { default_type text/plain; return 200 \"hello, world\n\"; }
  }"
ready "http://127.0.0.1:$up/"

ngx=$(freeport) ngxlog=$(freeport) ngxs=$(freeport)
loc="      limit_req zone=perip burst=1000000 nodelay;
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;"
start_nginx proxy "  limit_req_zone \$binary_remote_addr zone=perip:16m rate=1000000r/s;
  upstream up { server 127.0.0.1:$up; keepalive 128; keepalive_requests 1000000; }
  log_format bench '\$remote_addr - \$remote_user [\$time_local] \"\$request\" \$status \$body_bytes_sent \"\$http_referer\" \"\$http_user_agent\" \$request_time';
  server {
    listen 127.0.0.1:$ngx;
    location / {
$loc
    }
  }
  server {
    listen 127.0.0.1:$ngxlog;
    access_log $tmp/proxy/logs/access.log bench;
    location / {
$loc
    }
  }
  server {
    listen 127.0.0.1:$ngxs ssl;
    ssl_certificate $tmp/cert.pem;
    ssl_certificate_key $tmp/key.pem;
    location / {
$loc
    }
  }"
ngxpid=$last
ready "http://127.0.0.1:$ngx/"
ready "http://127.0.0.1:$ngxlog/"
ready "https://127.0.0.1:$ngxs/"

# moat_config NAME PROXY-LINES [TOP-LINES] writes $tmp/NAME.yaml.
moat_config() {
  cat >"$tmp/$1.yaml" <<EOF
state_dir: $tmp/$1.state
socket: $tmp/$1.sock
firewall: {backend: none}
${3:-}
proxy:
$2
jails:
  proxy: {ignoreip: [198.18.0.0/15, "2001:db8::/32"]}
EOF
  "$tmp/moat" check --config "$tmp/$1.yaml" >/dev/null
}

# start_moat NAME runs moat with $tmp/NAME.yaml; its pid is $last.
start_moat() {
  "$tmp/moat" run --config "$tmp/$1.yaml" >"$tmp/$1.log" 2>&1 &
  pids+=($!)
  last=$!
}

rows=$tmp/rows
: >"$rows"
# bench NAME URL PID... runs wrk against URL and appends a row; the PIDs
# are the proxy's processes whose CPU time is counted.
bench() {
  local name=$1 url=$2; shift 2
  local t0 t1 out=$tmp/wrk.$RANDOM
  echo "$name: wrk -t$threads -c$conns -d${dur}s --latency $url" >&2
  if [ "$warm" = 1 ]; then
    wrk -t"$threads" -c"$conns" -d1s "$url" >/dev/null
  fi
  t0=$(ticks "$@")
  wrk -t"$threads" -c"$conns" -d"${dur}s" --latency "$url" >"$out"
  t1=$(ticks "$@")
  awk -v name="$name" -v cpu=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" '
    function ms(v) {
      if (v ~ /us$/) return v / 1000
      if (v ~ /ms$/) return v + 0
      if (v ~ /m$/) return v * 60000
      if (v ~ /s$/) return v * 1000
      return v
    }
    /^ +50%/ { p50 = ms($2) }
    /^ +99%/ { p99 = ms($2) }
    /requests in/ { n = $1 }
    /Requests\/sec:/ { rps = $2 }
    /Non-2xx or 3xx responses:/ { err += $NF }
    /Socket errors:/ { gsub(/,/, ""); err += $4 + $6 + $8 + $10 }
    END {
      if (n == 0) { print "proxy.sh: no requests in wrk output for " name > "/dev/stderr"; exit 1 }
      printf "%s %.0f %.3f %.3f %d %s\n", name, rps, p50, p99, err + 0, (cpu > 0 ? sprintf("%.1f", cpu / hz * 1e6 / n) : "-")
    }' "$out" >>"$rows"
  tail -1 "$rows" >&2
}

bench direct "http://127.0.0.1:$up/"

# Reference rows: the bare net/http reverse proxy, with and without a
# BufferPool (httputil.ReverseProxy allocates 32 KiB per response without).
# go-rp-sync replaces http.Transport by a prototype that does the upstream
# round trip in the request's goroutine (no hand-off to the connection's
# reader and writer goroutines).
for v in go-rp:true:std go-rp-nopool:false:std go-rp-sync:true:sync; do
  IFS=: read -r name pool transport <<<"$v"
  gp=$(freeport)
  "$tmp/gorp" -listen "127.0.0.1:$gp" -upstream "127.0.0.1:$up" -pool="$pool" -transport "$transport" >"$tmp/gorp.log" 2>&1 &
  pids+=($!)
  last=$!
  ready "http://127.0.0.1:$gp/"
  bench "$name" "http://127.0.0.1:$gp/" "$last"
  stop "$last"
done

mp=$(freeport)
moat_config moat "  http: 127.0.0.1:$mp
  tls: {mode: off}
  routes:
    - {upstream: 127.0.0.1:$up, rate: 1000000/s, burst: 1000000}"
start_moat moat
ready "http://127.0.0.1:$mp/"
bench moat "http://127.0.0.1:$mp/" "$last"
stop "$last"

mpl=$(freeport)
moat_config moatlog "  http: 127.0.0.1:$mpl
  tls: {mode: off}
  access_log: $tmp/moat-access.log
  routes:
    - {upstream: 127.0.0.1:$up, rate: 1000000/s, burst: 1000000}"
start_moat moatlog
ready "http://127.0.0.1:$mpl/"
bench moat+log "http://127.0.0.1:$mpl/" "$last"
stop "$last"

bench nginx "http://127.0.0.1:$ngx/" "$ngxpid"
bench nginx+log "http://127.0.0.1:$ngxlog/" "$ngxpid"

mh=$(freeport) ms=$(freeport)
moat_config moattls "  http: 127.0.0.1:$mh
  https: 127.0.0.1:$ms
  tls: {mode: files, cert: $tmp/cert.pem, key: $tmp/key.pem}
  routes:
    - {upstream: 127.0.0.1:$up, rate: 1000000/s, burst: 1000000}"
start_moat moattls
ready "https://127.0.0.1:$ms/"
bench "moat-https" "https://127.0.0.1:$ms/" "$last"
stop "$last"
bench "nginx-https" "https://127.0.0.1:$ngxs/" "$ngxpid"

# Memory after many distinct clients: memory NAME LABEL [PROXY-LINES]
# floods a fresh moat that trusts 127.0.0.1 and appends what it took to
# $tmp/mem.
: >"$tmp/mem"
memory() {
  local name=$1 label=$2 extra=${3:-} mr mm pid rss0 rss1 hwm flood heap
  mr=$(freeport) mm=$(freeport)
  moat_config "$name" "  http: 127.0.0.1:$mr
  tls: {mode: off}
  trusted_proxies: [127.0.0.1/32]
$extra
  routes:
    - {upstream: 127.0.0.1:$up, rate: 100/s, burst: 100}" "metrics: {listen: 127.0.0.1:$mm}"
  start_moat "$name"
  pid=$last
  ready "http://127.0.0.1:$mr/"
  rss0=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$pid/status")
  echo "flood ($label): $clients requests from distinct X-Forwarded-For addresses to moat" >&2
  flood=$("$tmp/flood" -addr "127.0.0.1:$mr" -n "$clients" -conns "$conns")
  echo "$flood" >&2
  rss1=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$pid/status")
  hwm=$(awk '$1 == "VmHWM:" { print $2 }' "/proc/$pid/status")
  # The Go heap in use (live objects and garbage not yet swept) and the
  # number of heap objects, from moat's metrics.
  heap=$(curl -fsS "http://127.0.0.1:$mm/metrics" | awk '
    /^go_memstats_heap_inuse_bytes / { h = $2 } /^go_memstats_heap_objects / { o = $2 }
    /^moat_proxy_requests_total/ { n += $2 }
    END { printf "%.0f %.0f %.0f\n", h, o, n }')
  stop "$pid"
  {
    printf 'moat memory, %s:\n  %s\n' "$label" "$flood"
    awk -v n="$clients" -v a="$rss0" -v b="$rss1" -v h="$hwm" 'BEGIN {
      printf "  VmRSS before %.1f MiB, after %d clients %.1f MiB (+%.1f MiB, %.0f bytes/client), VmHWM %.1f MiB\n",
        a / 1024, n, b / 1024, (b - a) / 1024, (b - a) * 1024 / n, h / 1024 }'
    echo "$heap" | awk '{ printf "  Go heap in use after: %.1f MiB, %d objects; moat_proxy_requests_total %d\n", $1 / 1048576, $2, $3 }'
  } >>"$tmp/mem"
}
keys=$((2 * clients > 1024 ? 2 * clients : 1024)) # room for uneven shards
memory moatrss "trusted_proxies 127.0.0.1/32, route rate 100/s burst 100, default max_keys"
memory moatrss2 "the same with max_keys: $keys (every client tracked)" "  max_keys: $keys"

{
  printf 'moat reverse proxy vs nginx, one upstream (nginx, 13-byte body) on 127.0.0.1\n'
  printf 'wrk -t%s -c%s -d%ss --latency, keep-alive; %s cores; %s; %s; %s\n' "$threads" "$conns" "$dur" "$(nproc)" \
    "$(nginx -v 2>&1 | sed 's/^nginx version: //')" "$(wrk -v 2>&1 | head -1 | awk '{ print "wrk " $2 }')" "$(go version | awk '{ print $3 }')"
  echo
  awk '
    { name[NR] = $1; rps[$1] = $2; p50[$1] = $3; p99[$1] = $4; err[$1] = $5; cpu[$1] = $6 }
    END {
      printf "%-12s %10s %9s %9s %7s %14s\n", "target", "req/s", "p50 ms", "p99 ms", "errors", "proxy CPU us/req"
      for (i = 1; i <= NR; i++) {
        n = name[i]
        printf "%-12s %10d %9.2f %9.2f %7d %14s\n", n, rps[n], p50[n], p99[n], err[n], cpu[n]
      }
      print ""
      ratio("moat", "nginx"); ratio("moat+log", "nginx+log"); ratio("moat-https", "nginx-https")
      ratio("moat", "go-rp"); ratio("moat", "go-rp-nopool"); ratio("go-rp", "nginx"); ratio("go-rp-sync", "nginx")
    }
    function ratio(a, b) {
      if (!(a in rps) || !(b in rps) || rps[b] == 0) return
      printf "%-12s / %-12s  req/s %.2fx   p99 %.2fx   CPU/req %s\n", a, b, rps[a] / rps[b], (p99[b] > 0 ? p99[a] / p99[b] : 0),
        (cpu[a] != "-" && cpu[b] != "-" && cpu[b] > 0 ? sprintf("%.2fx", cpu[a] / cpu[b]) : "-")
    }' "$rows"
  echo
  cat "$tmp/mem"
} >"$tmp/summary"
echo
cat "$tmp/summary"
if [ -n "${OUT:-}" ]; then
  cp "$tmp/summary" "$OUT"
fi
