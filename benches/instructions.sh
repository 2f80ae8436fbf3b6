#!/usr/bin/env bash
# User-space instructions per proxied request, counted by callgrind: a noise-free figure
# for work on the request path (wall-clock rates on this shared 2-core machine swing by
# ±15 % between identical runs; instruction counts repeat within 1 %). Kernel work is not
# counted: see the side-by-side benchmark for the whole cost.
#
#   bash benches/instructions.sh                 # this tree's release build
#   BIN=/path/to/other/turnstile bash benches/instructions.sh   # compare another build
#   MODE=close bash benches/instructions.sh      # per connection-per-request client
#
# Starts one nginx origin (1 KiB body) and Turnstile under callgrind on free 127.0.0.1
# ports, warms up with WARMUP (2) s of MODE load (ka or close), zeroes the counters, runs SECS seconds
# of it (CONNS connections), dumps, and prints instructions per request.
# Needs nginx, valgrind and curl (INSTALL=1 apt-get installs missing ones as root).

set -u -o pipefail

SECS=${SECS:-3}
# Longer than the origin pool's short-pool window (1 s after the last new origin
# connection, `session/origin.rs`): measured before it ends, a share of the requests
# gives its connection back to the pool and takes one again, which counts a few hundred
# instructions per request more or less depending on where the window falls.
WARMUP=${WARMUP:-2}
MODE=${MODE:-ka}
CONNS=${CONNS:-8}
INSTALL=${INSTALL:-1}
# shellcheck source=side_by_side/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/side_by_side/lib.sh"
bench_setup instructions

install_missing nginx:nginx valgrind:valgrind curl:curl
require nginx valgrind curl callgrind_control

build_bins
BIN=${BIN:-$TS_BIN}

free_port ORIGIN_PORT
free_port TS_PORT
BODY=$(head -c 1024 /dev/zero | tr '\0' 'x')
mkdir -p "$WORK/origin.tmp"
render "$TPL/origin.nginx.conf" "$WORK/origin.conf" WORK="$WORK" PORT="$ORIGIN_PORT" BODY="$BODY"
render "$TPL/turnstile.records.toml" "$WORK/ts.toml" PORT="$TS_PORT" ORIGIN_PORT="$ORIGIN_PORT" \
    WORK="$WORK" NAME=ts ACCEPT_THREADS=0 NET_THREADS=2 CACHE_HTTP=false STORAGE='[]'
service nginx -e "$WORK/origin.error.log" -p "$WORK" -c "$WORK/origin.conf" >/dev/null 2>&1 &
STARTED+=($!)
valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" "$BIN" --config "$WORK/ts.toml" \
    >"$WORK/ts.log" 2>&1 &
TS_PID=$!
STARTED+=("$TS_PID")
wait_ready "$TS_PORT" "$TS_PID" 60 || { tail -n 20 "$WORK/ts.log"; log "Turnstile did not start"; exit 1; }

"$LOAD" --target "127.0.0.1:$TS_PORT" --mode "$MODE" --conns "$CONNS" --secs "$WARMUP" >/dev/null 2>&1
callgrind_control -z "$TS_PID" >/dev/null 2>&1
out=$("$LOAD" --target "127.0.0.1:$TS_PORT" --mode "$MODE" --conns "$CONNS" --secs "$SECS" 2>&1)
callgrind_control -d "$TS_PID" >/dev/null 2>&1
n=$(sed -n 's/^mode=.* ok=\([0-9]*\).*/\1/p' <<<"$out" | head -n 1)
[ -z "$n" ] && n=$(sed -n 's/.*(\([0-9]*\) ok.*/\1/p' <<<"$out" | head -n 1)
ir=$(cat "$WORK"/cg.out.* 2>/dev/null | awk '/^summary:/ { s += $2 } END { print s + 0 }')
if [ -z "$n" ] || [ "$n" = 0 ] || [ "$ir" = 0 ]; then
    log "no measurement (requests: ${n:-none}, instructions: $ir)"
    exit 1
fi
echo "$(basename "$BIN") ($MODE): $n requests, $ir user-space instructions, $((ir / n)) per request"
