#!/usr/bin/env bash
# Binary upgrades under a connection-per-request load, side by side behind one origin
# (an nginx serving 1 KiB): Turnstile's zero-downtime upgrade (`ctl server upgrade`),
# nginx's binary upgrade (USR2, then WINCH and QUIT to the old master) and HAProxy's
# master-worker reload (USR2 to the master; listeners handed over, `expose-fd listeners`).
#
# For each server, in turn (PASSES times): a steady window of STEADY_SECS with no swap,
# then swaps back to back for as long as a second window lasts, set from five timed
# swaps to hold ROUNDS of them (at most MAX_SWAP_SECS, 60). Each window is
# `benches/load.rs --mode close`: CONNS threads looping connect, GET with `Connection:
# close`, read the whole response; its latency is connect start → last byte of a 1 KiB
# response (so within microseconds of the first byte on loopback).
#
# Reported per server and window: swaps, requests, refused (err_connect), reset
# (err_reset), non-2xx (err_status), other errors (by cause), p50 and p99 latency.
# Environment: ROUNDS (100), MAX_SWAP_SECS (60), PASSES (1), CONNS (16), STEADY_SECS
# (10), SERVERS ("ts nginx haproxy"), INSTALL=0 to not apt-get install nginx and
# haproxy, KEEP_WORK=1 to keep the logs.
#
#   benches/upgrade.sh            # from the repository root
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TPL=$ROOT/benches/side_by_side
. "$TPL/lib.sh"
UP=$ROOT/benches/upgrade
bench_setup upgrade

ROUNDS=${ROUNDS:-100}
PASSES=${PASSES:-1}
CONNS=${CONNS:-16}
STEADY_SECS=${STEADY_SECS:-10}

install_missing nginx:nginx haproxy:haproxy
build_bins
NGINX=$(command -v nginx) || { log "nginx is needed (the origin)"; exit 1; }
BODY=$(head -c 1024 /dev/zero | tr '\0' 'x')

free_port ORIGIN_PORT
mkdir -p "$WORK/origin.tmp" "$WORK/nginx.tmp"
render "$TPL/origin.nginx.conf" "$WORK/origin.conf" WORK="$WORK" PORT="$ORIGIN_PORT" BODY="$BODY"
service "$NGINX" -e "$WORK/origin.error.log" -p "$WORK" -c "$WORK/origin.conf" >"$WORK/origin.out" 2>&1 &
ORIGIN_PID=$!
STARTED+=("$ORIGIN_PID")
wait_ready "$ORIGIN_PORT" "$ORIGIN_PID" 10 || { log "origin did not start"; exit 1; }

# --- the servers: start, swap once, stop ------------------------------------------------

ts_start() {
    free_port TS_PORT
    render "$UP/turnstile.records.toml" "$WORK/turnstile.toml" PORT="$TS_PORT" \
        ORIGIN_PORT="$ORIGIN_PORT" WORK="$WORK" ACCEPT_THREADS="${TS_ACCEPT_THREADS:-0}" \
        LISTEN="${TS_LISTEN:-true}"
    service "$TS_BIN" --config "$WORK/turnstile.toml" >>"$WORK/turnstile.log" 2>&1 &
    local pid=$!
    wait_ready "$TS_PORT" "$pid" 20 || { log "turnstile did not start"; return 1; }
    PORT=$TS_PORT
}
ts_swap() {
    "$TS_BIN" ctl --config "$WORK/turnstile.toml" server upgrade >>"$WORK/swaps.log" 2>&1
}
ts_stop() {
    "$TS_BIN" ctl --config "$WORK/turnstile.toml" server stop >/dev/null 2>&1
    local pid
    pid=$(cat "$WORK/turnstile.pid" 2>/dev/null)
    for _ in $(seq 1 100); do
        [ -n "$pid" ] && alive "$pid" || break
        sleep 0.1
    done
}

nginx_start() {
    free_port NGINX_PORT
    render "$UP/nginx.conf" "$WORK/nginx.conf" WORK="$WORK" PORT="$NGINX_PORT" ORIGIN_PORT="$ORIGIN_PORT"
    "$NGINX" -e "$WORK/nginx.error.log" -p "$WORK" -c "$WORK/nginx.conf" || return 1
    wait_ready "$NGINX_PORT" "$(cat "$WORK/nginx.pid")" 20 || { log "nginx did not start"; return 1; }
    PORT=$NGINX_PORT
}
# nginx's documented binary upgrade: USR2 starts a new master with the listening sockets
# (the old one renames its pid file .oldbin); WINCH stops the old workers gracefully;
# QUIT ends the old master.
nginx_swap() {
    local old new i
    old=$(cat "$WORK/nginx.pid")
    kill -USR2 "$old" || return 1
    for i in $(seq 1 200); do
        new=$(cat "$WORK/nginx.pid" 2>/dev/null)
        [ -n "$new" ] && [ "$new" != "$old" ] && [ -n "$(children "$new")" ] && break
        sleep 0.01
    done
    [ -n "$new" ] && [ "$new" != "$old" ] || { log "nginx: no new master"; return 1; }
    kill -WINCH "$old"
    kill -QUIT "$old"
    for i in $(seq 1 1000); do alive "$old" || break; sleep 0.01; done
}
nginx_stop() {
    local pid
    pid=$(cat "$WORK/nginx.pid" 2>/dev/null) && kill -QUIT "$pid" 2>/dev/null
    for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done
}

haproxy_start() {
    free_port HAPROXY_PORT
    render "$UP/haproxy.cfg" "$WORK/haproxy.cfg" WORK="$WORK" PORT="$HAPROXY_PORT" ORIGIN_PORT="$ORIGIN_PORT"
    service haproxy -W -db -f "$WORK/haproxy.cfg" >>"$WORK/haproxy.out" 2>&1 &
    HAPROXY_PID=$!
    wait_ready "$HAPROXY_PORT" "$HAPROXY_PID" 20 || { log "haproxy did not start"; return 1; }
    PORT=$HAPROXY_PORT
}
# The master-worker reload: USR2 to the master, which re-executes itself and starts new
# workers with the listeners of the old ones (`-x`, through the socket that exposes them);
# the old workers finish their connections (`-sf`). Done when the master says "Loading
# success" once more (a USR2 before that may go unseen).
haproxy_swap() {
    local before i
    before=$(grep -c "Loading success" "$WORK/haproxy.out")
    kill -USR2 "$HAPROXY_PID" || return 1
    for i in $(seq 1 1000); do
        [ "$(grep -c "Loading success" "$WORK/haproxy.out")" -gt "$before" ] && return 0
        # A master that has just re-executed itself may not take a USR2 yet: again.
        [ $((i % 100)) = 0 ] && { HAPROXY_RESENT=$((${HAPROXY_RESENT:-0} + 1)); kill -USR2 "$HAPROXY_PID"; }
        sleep 0.01
    done
    log "haproxy: no reload after 10 s"
    return 1
}
haproxy_stop() {
    stop_tree "$HAPROXY_PID"
}

# --- measuring -------------------------------------------------------------------------

# field LINE KEY: the value of KEY=... in a load line.
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<" $1"; }

# row NAME WINDOW SWAPS LINE: one result row ("other" names its causes: timeout, eof
# (closed before a whole response), http (a malformed one)).
row() {
    local l=$4 other k n
    other=$(($(field "$l" errors) - $(field "$l" err_connect) - $(field "$l" err_reset) - $(field "$l" err_status)))
    for k in timeout eof http; do
        n=$(field "$l" "err_$k")
        [ "${n:-0}" != 0 ] && other+=",$k:$n"
    done
    printf '%-9s %-7s %6s %9s %8s %6s %8s %6s %9s %9s\n' "$1" "$2" "$3" "$(field "$l" ok)" \
        "$(field "$l" err_connect)" "$(field "$l" err_reset)" "$(field "$l" err_status)" "$other" \
        "$(field "$l" p50_us)" "$(field "$l" p99_us)"
}

# measure NAME: a steady window, then a window of back-to-back swaps.
measure() {
    local name=$1 steady swapped t0 t1 secs done=0 during=0 ms i
    ${name}_start || return 1
    steady=$("$LOAD" --target "127.0.0.1:$PORT" --mode close --conns "$CONNS" --secs "$STEADY_SECS" 2>>"$WORK/load.err" | head -n 1)
    # Five timed swaps under load set the window: long enough for ROUNDS swaps (at most
    # MAX_SWAP_SECS); swaps then follow each other until the load ends, so the whole
    # window is swaps.
    "$LOAD" --target "127.0.0.1:$PORT" --mode close --conns "$CONNS" --secs 60 >/dev/null 2>&1 &
    local warm=$!
    sleep 1
    t0=$(date +%s%N)
    for i in 1 2 3 4 5; do
        ${name}_swap || { log "$name: a timing swap failed"; kill "$warm"; ${name}_stop; return 1; }
    done
    t1=$(date +%s%N)
    kill "$warm" 2>/dev/null
    wait "$warm" 2>/dev/null
    ms=$(((t1 - t0) / 5000000))
    secs=$(awk -v r="$ROUNDS" -v ms="$ms" -v max="${MAX_SWAP_SECS:-60}" \
        'BEGIN { s = r * ms / 1000 * 1.3; if (s < 2) s = 2; if (s > max) s = max; printf "%.1f", s }')
    "$LOAD" --target "127.0.0.1:$PORT" --mode close --conns "$CONNS" --secs "$secs" >"$WORK/$name.swapload" 2>>"$WORK/load.err" &
    local load=$!
    sleep 0.2
    while alive "$load"; do
        ${name}_swap || { log "$name: swap $((done + 1)) failed"; break; }
        done=$((done + 1))
        alive "$load" && during=$done
    done
    wait "$load"
    swapped=$(head -n 1 "$WORK/$name.swapload")
    ${name}_stop
    log "$name: a swap takes ${ms} ms; $during swaps within the ${secs} s load window${HAPROXY_RESENT:+ (USR2 sent again $HAPROXY_RESENT times)}"
    RESULTS+=("$(row "$name" steady 0 "$steady")" "$(row "$name" swaps "$during" "$swapped")")
}

RESULTS=()
for pass in $(seq 1 "$PASSES"); do
    for name in ${SERVERS:-ts nginx haproxy}; do
        case $name in
            nginx) have nginx || continue ;;
            haproxy) have haproxy || { log "haproxy missing: skipped"; continue; } ;;
        esac
        log "pass $pass: $name"
        measure "$name" || log "$name: failed (logs in $WORK with KEEP_WORK=1)"
    done
done

printf '%-9s %-7s %6s %9s %8s %6s %8s %6s %9s %9s\n' server window swaps requests refused reset non-2xx other p50_us p99_us
printf '%s\n' "${RESULTS[@]}"
