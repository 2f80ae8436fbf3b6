#!/usr/bin/env bash
# The origin queue under `per_server.connection.max`: keep-alive clients against a cap
# far below their number, so nearly every request waits for a place. Prints, per cap and
# build, the rate, the clients' latency (p50/p99: mostly time in the queue) and the
# daemon's queue counters. Builds are alternated so that a slow spell of this shared
# machine does not fall on one of them.
#
#   bash benches/origin_queue.sh                          # this tree's release build
#   BINS="/old/turnstile /new/turnstile" bash benches/origin_queue.sh   # compare builds
#   CAPS="1 2 8" ROUNDS=3 CONNS=64 SECS=5 bash benches/origin_queue.sh
#
# Starts one nginx origin (1 KiB body) on a free 127.0.0.1 port and, per turn, a fresh
# Turnstile (2 event threads, accept_threads = 0) with the cap. Needs nginx and curl
# (INSTALL=1 apt-get installs missing ones as root).

set -u -o pipefail

CAPS=${CAPS:-1 2 8}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
SECS=${SECS:-5}
INSTALL=${INSTALL:-1}
# shellcheck source=side_by_side/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/side_by_side/lib.sh"
bench_setup origin_queue

install_missing nginx:nginx curl:curl
require nginx curl
ulimit -n 20000 2>/dev/null

build_bins
read -r -a BUILDS <<<"${BINS:-$TS_BIN}"

start_origin 1024

for round in $(seq 1 "$ROUNDS"); do
    for cap in $CAPS; do
        n=${#BUILDS[@]}
        for i in $(seq 0 $((n - 1))); do
            bin=${BUILDS[$(((i + round) % n))]}
            free_port TS_PORT
            render "$TPL/turnstile.records.toml" "$WORK/ts.toml" PORT="$TS_PORT" \
                ORIGIN_PORT="$ORIGIN_PORT" WORK="$WORK" NAME=ts ACCEPT_THREADS=0 NET_THREADS=2 \
                CACHE_HTTP=false STORAGE='[]'
            sed -i "s/^\[proxy.config.http\]$/[proxy.config.http]\nper_server.connection.max = $cap/" \
                "$WORK/ts.toml"
            service "$bin" --config "$WORK/ts.toml" >"$WORK/ts.log" 2>&1 &
            pid=$!
            wait_ready "$TS_PORT" "$pid" 30 || { tail -n 20 "$WORK/ts.log"; log "Turnstile did not start"; exit 1; }
            out=$("$LOAD" --target "127.0.0.1:$TS_PORT" --mode ka --conns "$CONNS" --secs "$SECS" 2>&1)
            stats=$(curl -s "http://127.0.0.1:$TS_PORT/_stats/csv" |
                sed -n 's/^proxy\.process\.http\.\(origin_requests_queued\|origin_queue_timeouts\|origin_queue_wait_us\.p99\),/\1=/p' |
                tr '\n' ' ')
            stop_tree "$pid"
            printf 'round=%s cap=%s build=%s %s| %s\n' "$round" "$cap" "$bin" \
                "$(grep -o 'rps=[0-9]*\|p50_us=[0-9]*\|p99_us=[0-9]*\|errors=[0-9]*' <<<"$out" | head -n 4 | tr '\n' ' ')" \
                "$stats"
        done
    done
done
