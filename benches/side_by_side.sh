#!/usr/bin/env bash
# Side-by-side HTTP benchmark on loopback (SPEC §8): the origin alone, Turnstile, Apache
# Traffic Server, nginx and HAProxy as reverse proxies in front of one nginx origin
# serving a fixed 1 KiB body with `Cache-Control: max-age=3600`, driven by the load tool
# (benches/load.rs): keep-alive (ka), connection-per-request (close), an accept burst,
# and idle keep-alive memory; then cache hits through Turnstile and ATS with their caches
# on, keep-alive and connection-per-request. Prints Markdown tables. A benchmark, not a
# test: it asserts nothing, and the numbers are only comparable within one run on one
# machine (the client shares the cores with the servers).
#
#   bash benches/side_by_side.sh              # defaults: about 3 minutes
#   SECS=3 bash benches/side_by_side.sh       # quick run
#
# Environment:
#   RUNS=1             passes over all peers; each cell is the median of the passes
#                      (of two: their mean), the raw lines keep every pass; each pass
#                      starts one server further down the list than the one before
#   SECS=10            duration of each ka / close run (seconds)
#   CONNS=64           client connections of ka / close
#   BURST=6000         connections of the accept burst
#   IDLE_CONNS=10000   idle keep-alive connections for the RSS measure (0 = skip)
#   IDLE_HOLD=3        seconds the idle connections are held
#   ACCEPT_THREADS="0 1"  Turnstile accept threads, a row each; the first is also the
#                      cache run's (0: on the event threads, the cheaper mode on 2 cores)
#   NET_THREADS=2      ET_NET threads of Turnstile and ATS
#   PEERS="origin turnstile ats nginx haproxy"   which rows to run
#   INSTALL=1          apt-get install missing nginx / haproxy / trafficserver (as root)
#   KEEP_WORK=0        1 keeps the temporary directory (configs, logs) for inspection
#   SESSIONS=own       each server in a session of its own (setsid); "shared" keeps them
#                      in the script's session (see `service` in side_by_side/lib.sh)
#
# Everything listens on 127.0.0.1 only, on free ports the script picks; everything it
# starts is stopped on exit. Templates: benches/side_by_side/.

set -u -o pipefail

RUNS=${RUNS:-1}
RUN=1
SECS=${SECS:-10}
CONNS=${CONNS:-64}
BURST=${BURST:-6000}
IDLE_CONNS=${IDLE_CONNS:-10000}
IDLE_HOLD=${IDLE_HOLD:-3}
ACCEPT_THREADS=${ACCEPT_THREADS:-0 1}
NET_THREADS=${NET_THREADS:-2}
PEERS=${PEERS:-origin turnstile ats nginx haproxy}
INSTALL=${INSTALL:-1}
KEEP_WORK=${KEEP_WORK:-0}

# shellcheck source=side_by_side/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/side_by_side/lib.sh"
bench_setup side_by_side # WORK, log(), STARTED: pids of every server, stopped on exit
RESULTS=()     # "row|mode|key=value line of the load tool"
ROWS=()        # table rows, in order
CACHE_ROWS=()  # cache-hit table rows
NOTES=()       # skipped peers and other remarks, printed under the tables

note() {
    NOTES+=("$*")
    log "$*"
}

# --- processes ------------------------------------------------------------------------

# Forgets pid $1 after it was stopped.
stop_server() {
    local pid=$1 i
    stop_tree "$pid"
    for i in "${!STARTED[@]}"; do
        [ "${STARTED[$i]}" = "$pid" ] && unset 'STARTED[i]'
    done
    STARTED=("${STARTED[@]}")
}

# --- results ---------------------------------------------------------------------------

# run_load ROW MODE PORT PIDS ARGS...: runs the load tool, keeps its key=value line.
run_load() {
    local row=$1 mode=$2 port=$3 pids=$4 out kv human limit
    shift 4
    limit=$((SECS + IDLE_HOLD + 180))
    out=$(timeout -k 5 "$limit" "$LOAD" --target "127.0.0.1:$port" --mode "$mode" \
        --pid "$pids" "$@" 2>&1)
    kv=$(grep -m1 '^mode=' <<<"$out")
    human=$(grep -m1 '^# ' <<<"$out")
    if [ -z "$kv" ]; then
        note "$row $mode: the load tool failed: $(tail -n 3 <<<"$out" | tr '\n' ' ')"
        return 1
    fi
    log "$row: ${human#\# }"
    RESULTS+=("$row|$mode|run=$RUN $kv")
}

# get ROW MODE KEY: prints the median of that value over the passes, or "-".
get() { result_median "$@"; }

# add_row ARRAY-NAME ROW: appends ROW once (later passes reuse the first pass's rows).
add_row() {
    local -n rows=$1
    local r
    for r in "${rows[@]}"; do [ "$r" = "$2" ] && return; done
    rows+=("$2")
}

ms() { # microseconds to milliseconds
    case "$1" in -|na) printf -- '-' ;; *) awk -v u="$1" 'BEGIN { printf "%.2f", u / 1000 }' ;; esac
}

# bench_peer ROW PORT PIDS [IDLE_CONNS]: idle RSS on the fresh process, then ka, close, burst.
bench_peer() {
    local row=$1 port=$2 pids=$3 idle=${4:-$IDLE_CONNS}
    add_row ROWS "$row"
    if [ "$idle" -gt 0 ]; then
        run_load "$row" idle "$port" "$pids" --conns "$idle" --hold-secs "$IDLE_HOLD"
        sleep 1
    fi
    run_load "$row" ka "$port" "$pids" --conns "$CONNS" --secs "$SECS"
    run_load "$row" close "$port" "$pids" --conns "$CONNS" --secs "$SECS"
    sleep 1
    run_load "$row" burst "$port" "$pids" --burst "$BURST"
}

# --- installation and build ------------------------------------------------------------


ulimit -n "$(ulimit -Hn)" 2>/dev/null
NOFILE=$(ulimit -n)
install_missing nginx:nginx haproxy:haproxy trafficserver:traffic_server curl:curl
require nginx curl

log "building Turnstile and the load tool (release)"
build_bins
log "work dir $WORK; fd limit $NOFILE; SECS=$SECS CONNS=$CONNS BURST=$BURST IDLE_CONNS=$IDLE_CONNS"

BODY=$(head -c 1024 /dev/zero | tr '\0' 'x')

# --- origin ----------------------------------------------------------------------------

free_port ORIGIN_PORT
mkdir -p "$WORK/origin.tmp"
render "$TPL/origin.nginx.conf" "$WORK/origin.conf" WORK="$WORK" PORT="$ORIGIN_PORT" BODY="$BODY"
service nginx -e "$WORK/origin.error.log" -p "$WORK" -c "$WORK/origin.conf" >"$WORK/origin.out" 2>&1 &
ORIGIN_PID=$!
STARTED+=("$ORIGIN_PID")
if ! wait_ready "$ORIGIN_PORT" "$ORIGIN_PID" 10; then
    cat "$WORK/origin.out" "$WORK/origin.error.log" 2>/dev/null | tail -n 10
    log "the nginx origin did not start; aborting"
    exit 1
fi
log "origin: nginx pid $ORIGIN_PID on 127.0.0.1:$ORIGIN_PORT"

wanted() { [[ " $PEERS " == *" $1 "* ]]; }

# --- peers -----------------------------------------------------------------------------

run_origin() {
    bench_peer "origin (nginx, 1 worker)" "$ORIGIN_PORT" "$ORIGIN_PID"
}

# start_turnstile NAME ACCEPT_THREADS CACHE(true|false): sets TS_PID, TS_PORT.
start_turnstile() {
    local name=$1 accept=$2 cache=$3 storage='[]'
    free_port TS_PORT
    [ "$cache" = true ] && storage="[{ path = \"$WORK/$name.span\", size = \"256M\" }]"
    render "$TPL/turnstile.records.toml" "$WORK/$name.toml" PORT="$TS_PORT" \
        ORIGIN_PORT="$ORIGIN_PORT" WORK="$WORK" NAME="$name" ACCEPT_THREADS="$accept" \
        NET_THREADS="$NET_THREADS" CACHE_HTTP="$cache" STORAGE="$storage"
    service "$TS_BIN" --config "$WORK/$name.toml" >"$WORK/$name.log" 2>&1 &
    TS_PID=$!
    STARTED+=("$TS_PID")
    if ! wait_ready "$TS_PORT" "$TS_PID" 60; then
        note "Turnstile ($name) did not become ready: $(tail -n 3 "$WORK/$name.log" | tr '\n' ' ')"
        stop_server "$TS_PID"
        return 1
    fi
}

ts_metric() { # PORT NAME
    curl -s -m 5 "http://127.0.0.1:$1/_stats" | grep -o "\"$2\": *[0-9]*" | grep -o '[0-9]*$'
}

run_turnstile() {
    local a hits misses
    for a in $ACCEPT_THREADS; do
        start_turnstile "turnstile-a$a" "$a" false || continue
        bench_peer "Turnstile (accept_threads=$a)" "$TS_PORT" "$TS_PID"
        ts_check_open "Turnstile (accept_threads=$a)" "$TS_PORT"
        while IFS= read -r l; do
            note "Turnstile (accept_threads=$a) log: $l"
        done < <(grep -E 'WARN|ERROR|panic' "$WORK/turnstile-a$a.log" | head -n 5)
        stop_server "$TS_PID"
    done
    a=${ACCEPT_THREADS%% *}
    start_turnstile "turnstile-cache" "$a" true || return
    curl -s -o /dev/null -H 'Host: bench' "http://127.0.0.1:$TS_PORT/"
    run_load "Turnstile (cache on)" ka "$TS_PORT" "$TS_PID" --conns "$CONNS" --secs "$SECS" &&
        add_row CACHE_ROWS "Turnstile (cache on)"
    hits=$(ts_metric "$TS_PORT" proxy.process.cache.hits)
    misses=$(ts_metric "$TS_PORT" proxy.process.cache.misses)
    HITS["Turnstile (cache on)"]="${hits:-?} / $(( ${hits:-0} + ${misses:-0} ))"
    run_load "Turnstile (cache on)" close "$TS_PORT" "$TS_PID" --conns "$CONNS" --secs "$SECS"
    stop_server "$TS_PID"
}

# After a row's runs: Turnstile's own count of open client connections should be back to
# 1 (the stats request itself) once the clients are gone.
ts_check_open() { # ROW PORT
    local open i
    for i in $(seq 1 30); do
        open=$(ts_metric "$2" proxy.process.net.connections_currently_open)
        [ "${open:-x}" = 1 ] && return
        sleep 0.1
    done
    note "$1: proxy.process.net.connections_currently_open is ${open:-unreadable} 3 s after the last client left (expected 1, the stats request)"
}

ATS_BIN=""
find_ats() {
    ATS_BIN=$(command -v traffic_server 2>/dev/null)
    if [ -z "$ATS_BIN" ] && have dpkg; then
        ATS_BIN=$(dpkg -L trafficserver 2>/dev/null | grep -m1 '/bin/traffic_server$')
    fi
    [ -n "$ATS_BIN" ] && [ -x "$ATS_BIN" ]
}

# start_ats NAME CACHE(0|1): sets ATS_PID, ATS_PORT.
start_ats() {
    local name=$1 cache=$2 dir=$WORK/$1 modules libdir
    free_port ATS_PORT
    mkdir -p "$dir"/{etc,run,log,cache,var}
    cp -r /etc/trafficserver/. "$dir/etc/"
    modules=$(dpkg -L trafficserver 2>/dev/null | grep -m1 '/stats_over_http\.so$')
    modules=${modules%/*}
    modules=${modules:-/usr/lib/trafficserver/modules}
    libdir=${modules%/modules}
    render "$TPL/ats.runroot.yaml" "$dir/runroot.yaml" WORK="$dir" ATS_MODULES="$modules" ATS_LIBDIR="$libdir"
    render "$TPL/ats.records.config" "$dir/etc/records.config" PORT="$ATS_PORT" \
        NET_THREADS="$NET_THREADS" CACHE_HTTP="$cache"
    render "$TPL/ats.remap.config" "$dir/etc/remap.config" ORIGIN_PORT="$ORIGIN_PORT"
    render "$TPL/ats.storage.config" "$dir/etc/storage.config" WORK="$dir"
    # stats_over_http only where the hits are counted (the cache run).
    if [ "$cache" = 1 ]; then echo "stats_over_http.so _atsstats" >"$dir/etc/plugin.config"; else : >"$dir/etc/plugin.config"; fi
    service "$ATS_BIN" --run-root="$dir/runroot.yaml" >"$dir/traffic_server.out" 2>&1 &
    ATS_PID=$!
    STARTED+=("$ATS_PID")
    if ! wait_ready "$ATS_PORT" "$ATS_PID" 60; then
        note "ATS ($name) did not become ready: $(cat "$dir/traffic_server.out" "$dir/log/diags.log" 2>/dev/null | grep -E 'ERROR|FATAL|Fatal|WARN' | tail -n 3 | tr '\n' ' ')"
        stop_server "$ATS_PID"
        return 1
    fi
}

last_ok() { # ROW: requests answered in this pass's ka run of ROW
    local r kv=""
    for r in "${RESULTS[@]}"; do
        [[ $r == "$1|ka|run=$RUN "* ]] && kv=" ${r#*|ka|}"
    done
    [[ $kv =~ \ ok=([0-9]+) ]] && printf '%s' "${BASH_REMATCH[1]}"
}

ats_metric() { # PORT NAME
    curl -s -m 5 -H 'Host: bench' "http://127.0.0.1:$1/_atsstats" | grep -o "\"$2\": *\"[0-9]*\"" | grep -o '[0-9][0-9]*' | tail -n 1
}

run_ats() {
    local version hits lookups row i
    if ! find_ats; then
        note "ATS skipped: traffic_server not installed (apt-get install trafficserver failed or INSTALL=0)"
        return
    fi
    version=$("$ATS_BIN" -V 2>&1 | sed -n 's/.*Traffic Server \([0-9][0-9.]*\).*/\1/p' | head -n 1)
    if [ "${version%%.*}" != 9 ]; then
        note "ATS skipped: version '${version:-unknown}'; the template is ATS 9 records.config (ATS 10 wants records.yaml)"
        return
    fi
    if start_ats ats-proxy 0; then
        bench_peer "ATS $version" "$ATS_PORT" "$ATS_PID"
        stop_server "$ATS_PID"
    fi
    start_ats ats-cache 1 || return
    curl -s -o /dev/null -H 'Host: bench' "http://127.0.0.1:$ATS_PORT/"
    row="ATS $version (cache on)"
    run_load "$row" ka "$ATS_PORT" "$ATS_PID" --conns "$CONNS" --secs "$SECS" &&
        add_row CACHE_ROWS "$row"
    # ATS publishes its counters every few seconds: wait until the lookups cover the run.
    for i in $(seq 1 30); do
        lookups=$(ats_metric "$ATS_PORT" proxy.process.http.cache_lookups)
        [ "${lookups:-0}" -ge "$(last_ok "$row")" ] 2>/dev/null && break
        sleep 0.5
    done
    hits=$(ats_metric "$ATS_PORT" proxy.process.http.cache_hit_fresh)
    HITS["$row"]="${hits:-?} / ${lookups:-?}"
    run_load "$row" close "$ATS_PORT" "$ATS_PID" --conns "$CONNS" --secs "$SECS"
    stop_server "$ATS_PID"
}

run_nginx() {
    local port pid pids i version
    free_port port
    mkdir -p "$WORK/nginx.tmp"
    render "$TPL/proxy.nginx.conf" "$WORK/nginx.conf" WORK="$WORK" PORT="$port" ORIGIN_PORT="$ORIGIN_PORT"
    service nginx -e "$WORK/nginx.error.log" -p "$WORK" -c "$WORK/nginx.conf" >"$WORK/nginx.out" 2>&1 &
    pid=$!
    STARTED+=("$pid")
    if ! wait_ready "$port" "$pid" 20; then
        note "nginx proxy did not start: $(tail -n 3 "$WORK/nginx.error.log" 2>/dev/null | tr '\n' ' ')"
        stop_server "$pid"
        return
    fi
    for i in $(seq 1 50); do # the master and its 2 workers
        pids=$(tree "$pid" | sort -u | paste -sd, -)
        [ "$(tr ',' '\n' <<<"$pids" | wc -l)" -ge 3 ] && break
        sleep 0.1
    done
    version=$(nginx -v 2>&1 | sed -n 's#.*nginx/\([0-9.]*\).*#\1#p')
    bench_peer "nginx $version (2 workers)" "$port" "$pids"
    stop_server "$pid"
}

run_haproxy() {
    local port pid maxconn idle version
    if ! have haproxy; then
        note "HAProxy skipped: not installed (apt-get install haproxy failed or INSTALL=0)"
        return
    fi
    free_port port
    # HAProxy refuses to start unless 2 x maxconn fits in the fd limit.
    maxconn=$(((NOFILE - 200) / 2))
    idle=$IDLE_CONNS
    if [ "$idle" -gt $((maxconn - 100)) ]; then
        idle=$((maxconn - 100))
        note "HAProxy idle RSS measured with $idle connections (maxconn $maxconn: HAProxy needs 2 fds per connection within the fd limit $NOFILE)"
    fi
    render "$TPL/haproxy.cfg" "$WORK/haproxy.cfg" PORT="$port" ORIGIN_PORT="$ORIGIN_PORT" MAXCONN="$maxconn"
    service haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/haproxy.out" 2>&1 &
    pid=$!
    STARTED+=("$pid")
    if ! wait_ready "$port" "$pid" 20; then
        note "HAProxy did not start: $(grep -E 'ALERT' "$WORK/haproxy.out" | tail -n 2 | tr '\n' ' ')"
        stop_server "$pid"
        return
    fi
    version=$(haproxy -v 2>&1 | sed -n 's/.*version \([0-9][0-9.]*\).*/\1/p' | head -n 1)
    bench_peer "HAProxy $version (2 threads)" "$port" "$pid" "$idle"
    stop_server "$pid"
}

declare -A HITS=()
START_TIME=$(date +%s)
# Pass k starts k-1 places further down the list, so the machine's drift over a run
# (other tenants, thermal state) does not always land on the same server.
ORDER=(origin turnstile ats nginx haproxy)
for RUN in $(seq 1 "$RUNS"); do
    [ "$RUNS" -gt 1 ] && log "pass $RUN of $RUNS"
    for ((i = 0; i < ${#ORDER[@]}; i++)); do
        peer=${ORDER[$(((i + RUN - 1) % ${#ORDER[@]}))]}
        wanted "$peer" && "run_$peer"
    done
done

# --- report ----------------------------------------------------------------------------

errs() { # ROW: errors of ka/close/burst
    printf '%s/%s/%s' "$(get "$1" ka errors)" "$(get "$1" close errors)" "$(get "$1" burst errors)"
}

echo
echo "## Side-by-side on 127.0.0.1 ($(nproc) CPUs, $(uname -r); $(date -u +%Y-%m-%dT%H:%MZ))"
echo
[ "$RUNS" -gt 1 ] && echo "Each cell: the median of $RUNS passes over every server (of two passes: their mean)." && echo
echo "ka / close: $CONNS connections, ${SECS} s each; burst: $BURST connections at once (connect start -> first response byte); 1 KiB body; CPU = the server's own processes (user+sys) per 10k requests; the origin is an nginx with 1 worker; proxies use $NET_THREADS threads/workers."
echo
echo "| server | ka req/s | ka p50 / p99 ms | close req/s | close p50 / p99 ms | burst p50 / p99 / max ms | errors ka/close/burst | CPU s/10k ka | CPU s/10k close | idle KiB/conn |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for row in "${ROWS[@]}"; do
    printf '| %s | %s | %s / %s | %s | %s / %s | %s / %s / %s | %s | %s | %s | %s |\n' "$row" \
        "$(get "$row" ka rps)" "$(ms "$(get "$row" ka p50_us)")" "$(ms "$(get "$row" ka p99_us)")" \
        "$(get "$row" close rps)" "$(ms "$(get "$row" close p50_us)")" "$(ms "$(get "$row" close p99_us)")" \
        "$(ms "$(get "$row" burst p50_us)")" "$(ms "$(get "$row" burst p99_us)")" "$(ms "$(get "$row" burst max_us)")" \
        "$(errs "$row")" "$(get "$row" ka cpu_s_per_10k)" "$(get "$row" close cpu_s_per_10k)" \
        "$(get "$row" idle rss_kib_per_conn)"
done
if [ ${#CACHE_ROWS[@]} -gt 0 ]; then
    echo
    echo "Cache hits ($CONNS connections, ${SECS} s each mode, one 1 KiB object); close/origin:" \
        "the connection-per-request rate over the origin's own (origin-direct) in this run:"
    echo
    echo "| server | ka req/s | p50 / p99 ms | errors | fresh hits / lookups (a whole ka run) | CPU s/10k ka | close req/s | close/origin | CPU s/10k close |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    origin_close=$(get "origin (nginx, 1 worker)" close rps)
    for row in "${CACHE_ROWS[@]}"; do
        close=$(get "$row" close rps)
        ratio=$(awk -v c="$close" -v o="$origin_close" 'BEGIN { if (c + 0 > 0 && o + 0 > 0) printf "%.2f", c / o; else printf "-" }')
        printf '| %s | %s | %s / %s | %s | %s | %s | %s | %s | %s |\n' "$row" "$(get "$row" ka rps)" \
            "$(ms "$(get "$row" ka p50_us)")" "$(ms "$(get "$row" ka p99_us)")" "$(get "$row" ka errors)" \
            "${HITS[$row]:--}" "$(get "$row" ka cpu_s_per_10k)" "$close" "$ratio" \
            "$(get "$row" close cpu_s_per_10k)"
    done
fi
if [ "$IDLE_CONNS" -gt 0 ]; then
    echo
    for row in "${ROWS[@]}"; do
        [[ $row == Turnstile* ]] || continue
        echo "Idle keep-alive RSS, $row: $(get "$row" idle rss_before_kib) KiB -> $(get "$row" idle rss_after_kib) KiB with $(get "$row" idle ok) connections = $(get "$row" idle rss_kib_per_conn) KiB per connection."
    done
fi
if [ ${#NOTES[@]} -gt 0 ]; then
    echo
    for n in "${NOTES[@]}"; do echo "- $n"; done
fi
echo
echo "Raw results (load tool key=value lines):"
echo
echo '```'
for r in "${RESULTS[@]}"; do echo "${r%%|*}: ${r#*|*|}"; done
echo '```'
log "done in $(($(date +%s) - START_TIME)) s of benchmarking"
