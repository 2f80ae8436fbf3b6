#!/usr/bin/env bash
# Accept modes and builds side by side: connection-per-request (or keep-alive) turns of
# the load tool against fresh Turnstiles behind one nginx origin, alternating the
# variants turn by turn, round by round. Prints per variant the medians of req/s, CPU
# per 10k requests, the daemon's context switches per request (every thread's, voluntary
# and not), p50/p99 latency, the kernel's ListenOverflows + ListenDrops per turn
# (machine-wide, /proc/net/netstat) and the share of the machine's CPU time left idle.
# A benchmark: it asserts nothing.
#
#   bash benches/accept_ab.sh                                 # this build, threads vs event
#   VARIANTS="/old/turnstile:1 /new/turnstile:1 /new/turnstile:0" bash benches/accept_ab.sh
#   MODE=burst ROUNDS=5 bash benches/accept_ab.sh             # 6,000-connection bursts
#
# Environment: VARIANTS ("BINARY:ACCEPT_THREADS[:DEFER_ACCEPT] ...", default this tree's
# release build with 1 and with 0; DEFER_ACCEPT sets net.defer_accept, in seconds),
# MODE=close (or ka, or burst for BURST=6000 connections at once), ROUNDS=4, SECS=5,
# CONNS=64, CLIENT=load (benches/load.rs) or wrk (wrk -t1, -t WRK_THREADS; close and ka only). Turnstile runs 2 event threads with the benchmark config
# (side_by_side/turnstile.records.toml). Needs nginx and curl (INSTALL=1 apt-get
# installs missing ones as root).

set -u -o pipefail

MODE=${MODE:-close}
ROUNDS=${ROUNDS:-4}
SECS=${SECS:-5}
CONNS=${CONNS:-64}
BURST=${BURST:-6000}
CLIENT=${CLIENT:-load}
# shellcheck source=side_by_side/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/side_by_side/lib.sh"
bench_setup accept_ab

install_missing nginx:nginx curl:curl wrk:wrk
require nginx curl
[ "$CLIENT" = wrk ] && require wrk
ulimit -n "$(ulimit -Hn)" 2>/dev/null

build_bins
read -r -a VARIANTS <<<"${VARIANTS:-$TS_BIN:1 $TS_BIN:0}"

start_origin 1024

# listen_drops: the kernel's ListenOverflows + ListenDrops (TcpExt, /proc/net/netstat):
# connections refused or dropped at a full listen queue, machine-wide.
listen_drops() {
    awk '/^TcpExt:/ && !h { for (i = 1; i <= NF; i++) n[i] = $i; h = 1; next }
        /^TcpExt:/ { for (i = 1; i <= NF; i++) if (n[i] == "ListenOverflows" || n[i] == "ListenDrops") t += $i }
        END { print t + 0 }' /proc/net/netstat
}

# wrk_turn PORT PID: a wrk -t1 turn (Connection: close in close mode) as the load tool's
# key=value line: ok, rps, cpu_s_per_10k (PID's user+sys), p50_us and p99_us.
wrk_turn() {
    local t0 t1 out
    wrk_args "$MODE" "$1"
    t0=$(ticks "$2")
    out=$(timeout -k 5 $((SECS + 30)) wrk --latency "${WRK_ARGS[@]}" 2>&1)
    t1=$(ticks "$2")
    awk -v t0="$t0" -v t1="$t1" -v hz="$(getconf CLK_TCK)" -v n="$(wrk_requests "$out")" \
        -v r="$(wrk_rps "$out")" '
        function us(v) { return v ~ /us$/ ? v + 0 : v ~ /ms$/ ? v * 1000 : v * 1e6 }
        $1 == "50%" { p50 = us($2) }
        $1 == "99%" { p99 = us($2) }
        END { split(t0, a, " "); split(t1, b, " ")
            if (n > 0) printf "mode=wrk ok=%d rps=%d cpu_s_per_10k=%.4f p50_us=%d p99_us=%d\n",
                n, r, (b[1] + b[2] - a[1] - a[2]) / hz / n * 10000, p50, p99 }' <<<"$out"
}

declare -A RPS CPU SW P50 P99 DROPS IDLE
for round in $(seq 1 "$ROUNDS"); do
    n=${#VARIANTS[@]}
    for ((i = 0; i < n; i++)); do
        v=${VARIANTS[$(((i + round - 1) % n))]}
        IFS=: read -r bin threads defer <<<"$v"
        port=
        free_port port
        render "$TPL/turnstile.records.toml" "$WORK/ts.toml" PORT="$port" \
            ORIGIN_PORT="$ORIGIN_PORT" WORK="$WORK" NAME=ts ACCEPT_THREADS="$threads" \
            NET_THREADS=2 CACHE_HTTP=false STORAGE='[]'
        [ -n "$defer" ] && sed -i "/^\[proxy.config.net\]/a defer_accept = $defer" "$WORK/ts.toml"
        service "$bin" --config "$WORK/ts.toml" >"$WORK/ts.log" 2>&1 &
        pid=$!
        wait_ready "$port" "$pid" 30 || { tail "$WORK/ts.log"; log "$v did not start"; exit 1; }
        if [ "$MODE" = burst ]; then
            args=(--burst "$BURST")
        else
            args=(--conns "$CONNS" --secs "$SECS")
            "$LOAD" --target "127.0.0.1:$port" --mode "$MODE" --conns "$CONNS" --secs 1 >/dev/null 2>&1
        fi
        s0=$(switches "$pid") d0=$(listen_drops) i0=$(idle_ticks)
        if [ "$CLIENT" = wrk ]; then
            kv=$(wrk_turn "$port" "$pid")
        else
            kv=$(timeout -k 5 $((SECS + 60)) "$LOAD" --target "127.0.0.1:$port" --mode "$MODE" \
                "${args[@]}" --pid "$pid" 2>&1 | grep -m1 '^mode=')
        fi
        s1=$(switches "$pid") d1=$(listen_drops) i1=$(idle_ticks)
        stop_tree "$pid"
        log "$v: $kv"
        if ! [[ $kv =~ \ ok=([0-9]+) ]] || [ "${BASH_REMATCH[1]}" = 0 ]; then continue; fi
        DROPS[$v]+="$((d1 - d0)) "
        IDLE[$v]+="$(idle_share "$i0" "$i1") "
        SW[$v]+="$(awk -v d=$((s1 - s0)) -v n="${BASH_REMATCH[1]}" 'BEGIN { printf "%.2f", d / n }') "
        [[ $kv =~ \ rps=([0-9]+) ]] && RPS[$v]+="${BASH_REMATCH[1]} "
        [[ $kv =~ \ cpu_s_per_10k=([0-9.]+) ]] && CPU[$v]+="${BASH_REMATCH[1]} "
        [[ $kv =~ \ p50_us=([0-9]+) ]] && P50[$v]+="${BASH_REMATCH[1]} "
        [[ $kv =~ \ p99_us=([0-9]+) ]] && P99[$v]+="${BASH_REMATCH[1]} "
        [ "$MODE" = burst ] && sleep 1 # let the burst's connections leave TIME_WAIT's way
    done
done

echo
echo "## $MODE with $CLIENT, $ROUNDS alternating rounds ($(nproc) CPUs, $(date -u +%Y-%m-%dT%H:%MZ)): medians (min–max)"
echo
echo "| variant (binary:accept_threads[:defer_accept]) | req/s | CPU s/10k | switches/req | p50 ms | p99 ms | listen drops | CPUs idle |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for v in "${VARIANTS[@]}"; do
    # shellcheck disable=SC2086,SC2046 # one value per round
    echo "| $v | $(cell ${RPS[$v]:-0}) | $(cell ${CPU[$v]:-0}) | $(cell ${SW[$v]:-0}) | $(cell $(to_ms ${P50[$v]:-0})) | $(cell $(to_ms ${P99[$v]:-0})) | $(cell ${DROPS[$v]:-0}) | $(cell ${IDLE[$v]:-0}) |"
done
