#!/usr/bin/env bash
# Turnstile, nginx and HAProxy (and the origin alone) running side by side at once, each
# measured in short turns that alternate round by round: keep-alive and
# connection-per-request req/s and CPU per 10k requests, medians over the rounds. On a
# shared machine whose speed drifts over minutes, alternating short turns compares the
# servers under the same conditions, where benches/side_by_side.sh (whole blocks per
# server, plus bursts, memory, ATS and the cache) can hand one server a slow minute.
# A benchmark, not a test: it asserts nothing.
#
#   bash benches/interleaved.sh                  # 6 rounds of 4 s turns: about 4 minutes
#   ROUNDS=10 SECS=3 bash benches/interleaved.sh
#   PIN=1 MODES="ka wrk-ka" bash benches/interleaved.sh   # each proxy on a core of its own
#
# Environment: ROUNDS=6, SECS=4 (per turn), CONNS=64, MODES="ka close" (add "burst"
# for BURSTS=2 bursts per turn of BURST=6000 connections at once: connect -> first byte
# p50 and p99, medians over every burst of every round; "wrk-ka" and
# "wrk-close" measure with wrk -t1 (-t WRK_THREADS) instead of the load tool, as most
# operators would, and
# split each request's CPU between the server's user and sys time, the origin and wrk,
# beside the server's context switches (and preemptions), the origin's context switches,
# the machine's TCP segments per request and the share of its CPU time left idle),
# SYSCALLS=1 (count each server's system calls per wrk request with perf, if present),
# ACCEPT_THREADS=0 and NET_THREADS=2 (Turnstile; 1 with PIN=1), PIN=1 (each proxy on CPU 0
# with one worker or thread, the origin and the clients on CPU 1), KEEP_WORK=0, SESSIONS=own (each server
# in a session of its own: see `service` in side_by_side/lib.sh). Everything listens on
# 127.0.0.1 on free ports; everything started is stopped on exit. Needs nginx, haproxy
# and curl (INSTALL=1, the default, apt-get installs missing ones as root).

set -u -o pipefail

ROUNDS=${ROUNDS:-6}
SECS=${SECS:-4}
CONNS=${CONNS:-64}
MODES=${MODES:-ka close}
BURST=${BURST:-6000}
BURSTS=${BURSTS:-2}
ACCEPT_THREADS=${ACCEPT_THREADS:-0}
PIN=${PIN:-0}
# PIN=1: every proxy on CPU 0 with one worker (nginx), one thread (HAProxy) or one event
# thread (Turnstile); the origin, wrk and the load tool on CPU 1. The proxy then has a
# core of its own, as on a machine where it does not share cores with its clients and
# origins; the rate is bounded by the busier of the two cores.
WORKERS=2
PROXY_PIN=() REST_PIN=()
if [ "$PIN" = 1 ]; then
    WORKERS=1
    PROXY_PIN=(taskset -c 0) REST_PIN=(taskset -c 1)
fi
NET_THREADS=${NET_THREADS:-$WORKERS}
KEEP_WORK=${KEEP_WORK:-0}

# shellcheck source=side_by_side/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/side_by_side/lib.sh"
bench_setup interleaved

install_missing nginx:nginx haproxy:haproxy curl:curl wrk:wrk
require nginx haproxy curl
ulimit -n "$(ulimit -Hn)" 2>/dev/null
NOFILE=$(ulimit -n)

log "building Turnstile and the load tool (release)"
build_bins

NAMES=()        # server names, in table order
declare -A PORT PIDS

# add NAME PORT PID: waits until it answers, then records its process tree.
add() {
    local name=$1 port=$2 pid=$3 i
    STARTED+=("$pid")
    wait_ready "$port" "$pid" 60 || { log "$name did not start (see $WORK)"; exit 1; }
    sleep 0.5 # let nginx fork its workers
    NAMES+=("$name")
    PORT[$name]=$port
    PIDS[$name]=$(tree "$pid" | sort -u | paste -sd, -)
    log "$name on 127.0.0.1:$port (pids ${PIDS[$name]})"
}

BODY=$(head -c 1024 /dev/zero | tr '\0' 'x')
free_port ORIGIN_PORT
mkdir -p "$WORK/origin.tmp" "$WORK/nginx.tmp"
render "$TPL/origin.nginx.conf" "$WORK/origin.conf" WORK="$WORK" PORT="$ORIGIN_PORT" BODY="$BODY"
service "${REST_PIN[@]}" nginx -e "$WORK/origin.error.log" -p "$WORK" -c "$WORK/origin.conf" >/dev/null 2>&1 &
add "origin (nginx, 1 worker)" "$ORIGIN_PORT" $!

free_port port
render "$TPL/turnstile.records.toml" "$WORK/ts.toml" PORT="$port" ORIGIN_PORT="$ORIGIN_PORT" \
    WORK="$WORK" NAME=ts ACCEPT_THREADS="$ACCEPT_THREADS" NET_THREADS="$NET_THREADS" \
    CACHE_HTTP=false STORAGE='[]'
service "${PROXY_PIN[@]}" "$TS_BIN" --config "$WORK/ts.toml" >"$WORK/ts.log" 2>&1 &
add "Turnstile (accept_threads=$ACCEPT_THREADS)" "$port" $!

free_port port
render "$TPL/proxy.nginx.conf" "$WORK/nginx.conf" WORK="$WORK" PORT="$port" ORIGIN_PORT="$ORIGIN_PORT"
sed -i "s/^worker_processes 2;/worker_processes $WORKERS;/" "$WORK/nginx.conf"
service "${PROXY_PIN[@]}" nginx -e "$WORK/nginx.error.log" -p "$WORK" -c "$WORK/nginx.conf" >/dev/null 2>&1 &
add "nginx $(nginx -v 2>&1 | sed -n 's#.*nginx/\([0-9.]*\).*#\1#p') ($WORKERS workers)" "$port" $!

free_port port
render "$TPL/haproxy.cfg" "$WORK/haproxy.cfg" PORT="$port" ORIGIN_PORT="$ORIGIN_PORT" \
    MAXCONN=$(((NOFILE - 200) / 2))
sed -i "s/^\( *nbthread\) 2$/\1 $WORKERS/" "$WORK/haproxy.cfg"
service "${PROXY_PIN[@]}" haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/haproxy.out" 2>&1 &
add "HAProxy $(haproxy -v 2>&1 | sed -n 's/.*version \([0-9][0-9.]*\).*/\1/p' | head -n 1) ($WORKERS threads)" "$port" $!

ORIGIN=${NAMES[0]}

# wrk_turn NAME ka|close: a wrk turn (-t WRK_THREADS, 1) against NAME, as the load tool's key=value line
# (rps, cpu_s_per_10k), plus where the CPU of a request went, in µs: the server's user
# and sys time, the origin's, wrk's own (bash's `times` after it), and the server's
# context switches per request (and of those, the preemptions), the origin's context
# switches per request, the TCP segments the machine sent per request and the share of
# the machine's CPU time that stood idle during the turn. "close" sends Connection: close, so wrk reconnects per
# request.
wrk_turn() {
    local name=$1 kind=$2 s0 s1 o0 o1 x0 x1 p0 p1 g0 g1 w0 w1 i0 i1 out reqs rps hz
    wrk_args "$kind" "${PORT[$name]}"
    s0=$(ticks "${PIDS[$name]}") o0=$(ticks "${PIDS[$ORIGIN]}") x0=$(switches "${PIDS[$name]}")
    p0=$(preemptions "${PIDS[$name]}") g0=$(tcp_segments) w0=$(switches "${PIDS[$ORIGIN]}") i0=$(idle_ticks)
    # shellcheck disable=SC2016 # expanded by the inner bash
    out=$(timeout -k 5 $((SECS + 30)) bash -c '"$@" 2>&1; times' _ "${REST_PIN[@]}" wrk "${WRK_ARGS[@]}")
    s1=$(ticks "${PIDS[$name]}") o1=$(ticks "${PIDS[$ORIGIN]}") x1=$(switches "${PIDS[$name]}")
    p1=$(preemptions "${PIDS[$name]}") g1=$(tcp_segments) w1=$(switches "${PIDS[$ORIGIN]}") i1=$(idle_ticks)
    reqs=$(wrk_requests "$out")
    rps=$(wrk_rps "$out")
    hz=$(getconf CLK_TCK)
    [ -n "$reqs" ] && [ "$reqs" -gt 0 ] || return 0
    # The last line of `times`: the children's user and sys time, "0m1.230s 0m2.340s".
    awk -v k="$kind" -v r="${rps%.*}" -v s0="$s0" -v s1="$s1" -v o0="$o0" -v o1="$o1" \
        -v x=$((x1 - x0)) -v p=$((p1 - p0)) -v g=$((g1 - g0)) -v ow=$((w1 - w0)) -v idle="$(idle_share "$i0" "$i1")" -v hz="$hz" -v n="$reqs" -v origin="$([ "$name" = "$ORIGIN" ] && echo 1)" \
        -v w="$(tail -n 1 <<<"$out")" '
        function secs(t, a) { split(t, a, /[ms]/); return a[1] * 60 + a[2] }
        BEGIN {
            split(s0, a, " "); split(s1, b, " "); split(o0, c, " "); split(o1, d, " ")
            split(w, t, " ")
            us = 1e6 / hz / n
            u = (b[1] - a[1]) * us; s = (b[2] - a[2]) * us
            o = origin ? 0 : (d[1] + d[2] - c[1] - c[2]) * us
            printf "mode=wrk-%s rps=%d cpu_s_per_10k=%.3f user_us=%.2f sys_us=%.2f origin_us=%.2f client_us=%.2f switches=%.3f preempted=%.3f segments=%.2f origin_switches=%.3f idle=%.3f\n",
                k, r, (u + s) / 100, u, s, o, (secs(t[1]) + secs(t[2])) * 1e6 / n, x / n, p / n, g / n, origin ? 0 : ow / n, idle
        }'
}

declare -A RPS CPU P50 P99 SPLIT # "name|mode" -> space-separated values, one per round
for round in $(seq 1 "$ROUNDS"); do
    log "round $round of $ROUNDS"
    n=${#NAMES[@]}
    for ((i = 0; i < n; i++)); do
        name=${NAMES[$(((i + round - 1) % n))]}
        for mode in $MODES; do
            reps=1
            [ "$mode" = burst ] && reps=$BURSTS
            for ((rep = 0; rep < reps; rep++)); do
                if [[ $mode == wrk-* ]]; then
                    kv=$(wrk_turn "$name" "${mode#wrk-}")
                else
                    if [ "$mode" = burst ]; then
                        args=(--burst "$BURST")
                    else
                        args=(--conns "$CONNS" --secs "$SECS")
                    fi
                    kv=$(timeout -k 5 $((SECS + 60)) "${REST_PIN[@]}" "$LOAD" --target "127.0.0.1:${PORT[$name]}" \
                        --mode "$mode" "${args[@]}" --pid "${PIDS[$name]}" 2>&1 | grep -m1 '^mode=')
                fi
                [[ $kv =~ \ rps=([0-9]+) ]] && RPS["$name|$mode"]+="${BASH_REMATCH[1]} "
                [[ $kv =~ \ cpu_s_per_10k=([0-9.]+) ]] && CPU["$name|$mode"]+="${BASH_REMATCH[1]} "
                [[ $kv =~ \ p50_us=([0-9]+) ]] && P50["$name|$mode"]+="${BASH_REMATCH[1]} "
                [[ $kv =~ \ p99_us=([0-9]+) ]] && P99["$name|$mode"]+="${BASH_REMATCH[1]} "
                [[ $kv =~ \ user_us=(.*) ]] && SPLIT["$name|$mode"]+="${BASH_REMATCH[0]}"$'\n'
                log "$name $mode: ${kv:-the load tool failed}"
                [ "$mode" = burst ] && sleep 1 # let the burst's connections leave TIME_WAIT's way
            done
        done
    done
done


echo
echo "## Interleaved on 127.0.0.1 ($(nproc) CPUs, $(date -u +%Y-%m-%dT%H:%MZ))"
echo
echo "$ROUNDS rounds; in each, every server gets a $SECS s turn per mode ($CONNS connections," \
    "1 KiB body), starting one server further down the list each round. Cells: median" \
    "(min–max) over the rounds; CPU = the server's processes, user+sys, per 10k requests."
echo
header="| server |"
rule="|---|"
for mode in $MODES; do
    if [ "$mode" = burst ]; then
        header+=" burst p50 ms | burst p99 ms |"
    else
        header+=" $mode req/s | $mode CPU s/10k |"
    fi
    rule+="---:|---:|"
done
echo "$header"
echo "$rule"
for name in "${NAMES[@]}"; do
    row="| $name |"
    for mode in $MODES; do
        # shellcheck disable=SC2086 # word splitting of the value lists is intended
        if [ "$mode" = burst ]; then
            row+=" $(cell $(to_ms ${P50["$name|$mode"]:-0})) | $(cell $(to_ms ${P99["$name|$mode"]:-0})) |"
        else
            row+=" $(cell ${RPS["$name|$mode"]:-0}) | $(cell ${CPU["$name|$mode"]:-0}) |"
        fi
    done
    echo "$row"
done

# The goals of the lead (README, Benchmarks): Turnstile's medians against the best
# peer's (nginx, HAProxy) in each mode.
echo
ts=""
for name in "${NAMES[@]}"; do [[ $name == Turnstile* ]] && ts=$name; done
for mode in $MODES; do
    best="" best_v=""
    for name in "${NAMES[@]}"; do
        [[ $name == Turnstile* || $name == origin* ]] && continue
        # shellcheck disable=SC2086
        if [ "$mode" = burst ]; then
            v=$(median ${P99["$name|$mode"]:-0})
            if [ -z "$best_v" ] || awk -v a="$v" -v b="$best_v" 'BEGIN { exit !(a < b) }'; then
                best=$name best_v=$v
            fi
        else
            v=$(median ${RPS["$name|$mode"]:-0})
            if [ -z "$best_v" ] || awk -v a="$v" -v b="$best_v" 'BEGIN { exit !(a > b) }'; then
                best=$name best_v=$v
            fi
        fi
    done
    [ -n "$ts" ] && [ -n "$best" ] || continue
    # shellcheck disable=SC2086
    if [ "$mode" = burst ]; then
        awk -v m="$mode" -v b="$best" \
            -v t50="$(median ${P50["$ts|$mode"]:-0})" -v b50="$(median ${P50["$best|$mode"]:-0})" \
            -v t99="$(median ${P99["$ts|$mode"]:-0})" -v b99="$(median ${P99["$best|$mode"]:-0})" \
            'BEGIN { printf "- %s: Turnstile p50 %.2fx, p99 %.2fx of %s (goal: p99 <= 0.8x, p50 < 1x)\n",
                     m, b50 ? t50 / b50 : 0, b99 ? t99 / b99 : 0, b }'
    else
        awk -v m="$mode" -v b="$best" \
            -v tr="$(median ${RPS["$ts|$mode"]:-0})" -v br="$(median ${RPS["$best|$mode"]:-0})" \
            -v tc="$(median ${CPU["$ts|$mode"]:-0})" -v bc="$(median ${CPU["$best|$mode"]:-0})" \
            'BEGIN { printf "- %s: Turnstile %.2fx the rate of %s at %.2fx its CPU per request\n",
                     m, br ? tr / br : 0, b, bc ? tc / bc : 0 }'
    fi
done

# Where a wrk request's CPU went, in µs per request (medians over the rounds): the
# server's user and sys time and its context switches, the origin's time and wrk's. On
# 2 busy cores the rate is about 2 s / (the sum), so the sum bounds the rate any proxy
# can reach: a 1.3x rate needs the sum at 1/1.3 of the best peer's. With PIN=1 each core
# bounds it alone: 1 s / (the proxy's time) on CPU 0, 1 s / (the origin's and wrk's) on
# CPU 1.
# split_field LINES KEY: the median of KEY=value over the lines.
split_field() {
    # shellcheck disable=SC2046 # one value per round
    median $(grep -o " $2=[0-9.]*" <<<" ${1//$'\n'/$'\n' }" | cut -d= -f2)
}
any_split=0
for mode in $MODES; do [[ $mode == wrk-* ]] && any_split=1; done
if [ "$any_split" = 1 ]; then
    echo
    echo "Where a request's CPU went with wrk, µs per request (medians over the rounds):"
    echo
    echo "| server | mode | server user | server sys | server switches | of them preempted | TCP segments | origin | origin switches | wrk | all | CPUs idle |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    declare -A ALL
    for mode in $MODES; do
        [[ $mode == wrk-* ]] || continue
        for name in "${NAMES[@]}"; do
            lines=${SPLIT["$name|$mode"]:-}
            [ -n "$lines" ] || continue
            u=$(split_field "$lines" user_us) s=$(split_field "$lines" sys_us)
            o=$(split_field "$lines" origin_us) c=$(split_field "$lines" client_us)
            x=$(split_field "$lines" switches) p=$(split_field "$lines" preempted)
            g=$(split_field "$lines" segments) ow=$(split_field "$lines" origin_switches)
            idle=$(split_field "$lines" idle)
            ALL["$name|$mode"]=$(awk -v u="$u" -v s="$s" -v o="$o" -v c="$c" 'BEGIN { printf "%.2f", u + s + o + c }')
            echo "| $name | $mode | $u | $s | $x | $p | $g | $o | $ow | $c | ${ALL["$name|$mode"]} | $idle |"
        done
    done
    echo
    for mode in $MODES; do
        [[ $mode == wrk-* ]] || continue
        best="" best_all=""
        for name in "${NAMES[@]}"; do
            [[ $name == Turnstile* || $name == origin* ]] && continue
            v=${ALL["$name|$mode"]:-}
            [ -n "$v" ] || continue
            if [ -z "$best_all" ] || awk -v a="$v" -v b="$best_all" 'BEGIN { exit !(a < b) }'; then
                best=$name best_all=$v
            fi
        done
        [ -n "$ts" ] && [ -n "$best" ] || continue
        lines=${SPLIT["$ts|$mode"]:-}
        [ -n "$lines" ] || continue
        if [ "$PIN" = 1 ]; then
            awk -v m="$mode" -v u="$(split_field "$lines" user_us)" -v s="$(split_field "$lines" sys_us)" \
                -v o="$(split_field "$lines" origin_us)" -v c="$(split_field "$lines" client_us)" '
                BEGIN { printf "- %s: Turnstile'"'"'s core spent %.2f µs per request (at most %.0f req/s), the origin'"'"'s and wrk'"'"'s core %.2f (at most %.0f req/s)\n",
                    m, u + s, 1e6 / (u + s), o + c, 1e6 / (o + c) }'
            continue
        fi
        awk -v m="$mode" -v b="$best" -v ball="$best_all" -v o="$(split_field "$lines" origin_us)" \
            -v c="$(split_field "$lines" client_us)" -v s="$(split_field "$lines" sys_us)" '
            BEGIN { room = ball / 1.3 - o - c
                printf "- %s: a 1.3x rate needs all processes at <= %.2f µs per request (1/1.3 of %s'"'"'s %.2f); the origin and wrk took %.2f beside Turnstile, leaving %.2f for the proxy, whose kernel time alone was %.2f\n",
                    m, ball / 1.3, b, ball, o + c, room, s }'
    done
fi

# SYSCALLS=1: one more wrk turn per server and wrk mode under `perf stat`, counting the
# server's system calls per request (a separate pass: tracing slows the server, so its
# CPU figures above are taken without it).
if [ "${SYSCALLS:-0}" = 1 ] && have perf; then
    echo
    echo "System calls per request (perf stat, one $SECS s wrk turn each):"
    echo
    for mode in $MODES; do
        [[ $mode == wrk-* ]] || continue
        for name in "${NAMES[@]}"; do
            wrk_args "${mode#wrk-}" "${PORT[$name]}"
            perf stat -x, -e 'syscalls:sys_enter_*' -p "${PIDS[$name]}" -o "$WORK/perf.out" \
                -- sleep $((SECS + 1)) >/dev/null 2>&1 &
            pp=$!
            sleep 0.5
            out=$("${REST_PIN[@]}" wrk "${WRK_ARGS[@]}" 2>&1)
            wait "$pp"
            reqs=$(wrk_requests "$out")
            [ -n "$reqs" ] && [ "$reqs" -gt 0 ] || continue
            printf -- '- %s, %s: %s\n' "$name" "$mode" "$(awk -F, -v n="$reqs" '
                $1 ~ /^[0-9]+$/ && $1 / n >= 0.01 { e = $3; sub("syscalls:sys_enter_", "", e)
                    printf "%s %.2f\n", e, $1 / n }' "$WORK/perf.out" | sort -k2 -gr | paste -sd, - |
                sed 's/,/, /g')"
        done
    done
elif [ "${SYSCALLS:-0}" = 1 ]; then
    log "SYSCALLS=1 needs perf (linux-perf); skipped"
fi
