#!/usr/bin/env bash
# Slow HTTP attacks on loopback: slowhttptest's slowloris (-H), slow body (-B) and slow
# read (-X) against Turnstile (cache on) and against nginx (proxy_cache on), each a
# reverse proxy in front of one nginx origin. The origin serves a 1 MiB and a 1 KiB file
# with `Cache-Control: max-age=3600`, and POST /post, which reads the whole body before
# it answers. Both objects are warmed into the proxy's cache before each attack, so
# slowloris and slow read aim at a cache hit of the 1 MiB object; slow body POSTs to
# /post, which goes through to the origin. Each attack gets a freshly started server.
# During the attack the script samples the server's RSS (VmRSS summed over its
# processes: nginx's master, workers and cache processes, so shared pages count more
# than once) and CPU (utime+stime over the attack, % of one core), while a normal
# client fetches the 1 KiB cached object on a new connection every ~50 ms (curl,
# PROBE_TIMEOUT s at most; a non-200 answer or a curl error is a failure; latencies
# are over every attempt, failed ones included). Prints a Markdown table and
# slowhttptest's own state at the end of each run. A benchmark, not a test: it
# asserts nothing, and the numbers are only comparable within one run on one machine
# (the attacker and the normal client share the cores with the servers).
#
#   bash benches/slowhttp.sh                          # defaults: about 3.5 minutes
#   DURATION=10 CONNS=500 bash benches/slowhttp.sh    # quick run
#   BIN=/path/to/turnstile SERVERS=turnstile bash benches/slowhttp.sh
#
# Environment:
#   BIN                Turnstile binary to measure; unset: `cargo build --release` in
#                      this repository and target/release/turnstile
#   SERVERS="turnstile nginx"                 which servers, in this order
#   ATTACKS="slowloris slowbody slowread"     which attacks, in this order
#   DURATION=25        seconds of each attack (slowhttptest -l)
#   CONNS=1000         attack connections (-c)
#   RATE=200           new attack connections per second (-r): all open after CONNS/RATE s
#   INTERVAL=10        slowloris / slow body: seconds between follow-up data (-i)
#   FOLLOW_UP=24       slowloris / slow body: max bytes of each follow-up (-x)
#   BODY_LEN=65536     slow body: the Content-Length announced (-s)
#   PIPELINE=3         slow read: requests pipelined on each connection (-k)
#   WINDOW="512 1024"  slow read: receive window range, bytes (-w, -y)
#   READ_EVERY=5       slow read: seconds between reads (-n)
#   READ_BYTES=32      slow read: bytes per read (-z)
#   PROBE_TIMEOUT=5    normal client: curl -m, seconds; also slowhttptest's probe (-p)
#   PROBE_PAUSE=0.05   normal client: pause between its requests, seconds
#   SAMPLE_EVERY=0.25  RSS sampling period, seconds
#   SETTLE=3           seconds after the attack ends before "RSS after" is read
#   RSS_LIMIT_MIB=8192 an attack is stopped early when the server's RSS passes this
#                      (a guard for the machine; the row is marked)
#   NET_THREADS=2      Turnstile's event threads (nginx has 2 workers)
#   INSTALL=1          apt-get install missing slowhttptest / nginx / curl (as root)
#   KEEP_WORK=0        1 keeps the temporary directory: configs, logs, and per run
#                      SERVER-ATTACK.rss (ms, KiB), .probe (start, code, seconds) and
#                      .slowhttptest (its output)
#   SESSIONS=own       each server in a session of its own (see `service` in
#                      side_by_side/lib.sh); "shared" keeps them in the script's
#
# Slow read: the default -w 512 -y 1024 -n 5 -z 32 -k 3 asks for the 1 MiB object 3
# times in one write on each connection, advertises a receive window of 512-1024 bytes
# and takes 32 bytes from the socket every 5 s, so over the attack each connection
# drains well under 1 KiB of the 3 MiB it asked for: whatever the server has read
# ahead and prepared for the connection stays in its memory (a server that streams a
# hit from its cache as the socket drains holds a bounded buffer per connection; one
# that queues every pipelined answer whole holds up to PIPELINE x 1 MiB). Raising
# PIPELINE multiplies the latter, which RSS_LIMIT_MIB bounds.
#
# Everything listens on 127.0.0.1 only, on free ports the script picks; everything it
# starts is stopped on exit. Templates: benches/side_by_side/slowhttp.*.conf and
# benches/side_by_side/turnstile.records.toml.

set -u -o pipefail

SERVERS=${SERVERS:-turnstile nginx}
ATTACKS=${ATTACKS:-slowloris slowbody slowread}
DURATION=${DURATION:-25}
CONNS=${CONNS:-1000}
RATE=${RATE:-200}
INTERVAL=${INTERVAL:-10}
FOLLOW_UP=${FOLLOW_UP:-24}
BODY_LEN=${BODY_LEN:-65536}
PIPELINE=${PIPELINE:-3}
WINDOW=${WINDOW:-512 1024}
READ_EVERY=${READ_EVERY:-5}
READ_BYTES=${READ_BYTES:-32}
PROBE_TIMEOUT=${PROBE_TIMEOUT:-5}
PROBE_PAUSE=${PROBE_PAUSE:-0.05}
SAMPLE_EVERY=${SAMPLE_EVERY:-0.25}
SETTLE=${SETTLE:-3}
RSS_LIMIT_MIB=${RSS_LIMIT_MIB:-8192}
NET_THREADS=${NET_THREADS:-2}
INSTALL=${INSTALL:-1}
KEEP_WORK=${KEEP_WORK:-0}

# shellcheck source=side_by_side/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/side_by_side/lib.sh"
bench_setup slowhttp # WORK, log(), STARTED: pids of everything started, stopped on exit

ROWS=()   # table rows
NOTES=()  # slowhttptest's end state per run, skipped servers and other remarks

note() {
    NOTES+=("$*")
    log "$*"
}

# Stops pid $1 and its descendants and forgets it.
stop_server() {
    local pid=$1 i
    stop_tree "$pid"
    for i in "${!STARTED[@]}"; do
        [ "${STARTED[$i]}" = "$pid" ] && unset 'STARTED[i]'
    done
    STARTED=("${STARTED[@]}")
}

# --- installation and build ------------------------------------------------------------

ulimit -n "$(ulimit -Hn)" 2>/dev/null
install_missing slowhttptest:slowhttptest nginx:nginx curl:curl
require slowhttptest nginx curl awk
if [ "$(ulimit -n)" -lt $((CONNS + 100)) ]; then
    log "the fd limit $(ulimit -n) is too low for CONNS=$CONNS; aborting"
    exit 1
fi
read -r WIN_LO WIN_HI <<<"$WINDOW"
WIN_HI=${WIN_HI:-$WIN_LO}
HZ=$(getconf CLK_TCK 2>/dev/null || echo 100)

if [[ " $SERVERS " == *" turnstile "* ]]; then
    if [ -n "${BIN:-}" ]; then
        TS_BIN=$BIN
        [ -x "$TS_BIN" ] || { log "BIN=$TS_BIN is not an executable"; exit 1; }
        TS_DESC=$TS_BIN
    else
        log "building Turnstile (release)"
        (cd "$ROOT" && cargo build --release --bin turnstile) >"$WORK/build.log" 2>&1 ||
            { tail -n 30 "$WORK/build.log"; log "cargo build failed"; exit 1; }
        TS_BIN=$ROOT/target/release/turnstile
        TS_DESC="$TS_BIN, built from $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')"
    fi
fi
log "work dir $WORK; fd limit $(ulimit -n); DURATION=$DURATION CONNS=$CONNS RATE=$RATE"

# --- origin ----------------------------------------------------------------------------

mkdir -p "$WORK/www" "$WORK/origin.tmp" "$WORK/nginx.tmp"
head -c 1048576 /dev/urandom >"$WORK/www/big.bin"
head -c 1024 /dev/zero | tr '\0' 'x' >"$WORK/www/small.txt"
BIG=/big.bin
SMALL=/small.txt
free_port ORIGIN_PORT
render "$TPL/slowhttp.origin.nginx.conf" "$WORK/origin.conf" WORK="$WORK" PORT="$ORIGIN_PORT"
service nginx -e "$WORK/origin.error.log" -p "$WORK" -c "$WORK/origin.conf" >"$WORK/origin.out" 2>&1 &
ORIGIN_PID=$!
STARTED+=("$ORIGIN_PID")
if ! wait_ready "$ORIGIN_PORT" "$ORIGIN_PID" 10; then
    cat "$WORK/origin.out" "$WORK/origin.error.log" 2>/dev/null | tail -n 10
    log "the nginx origin did not start; aborting"
    exit 1
fi
log "origin: nginx pid $ORIGIN_PID on 127.0.0.1:$ORIGIN_PORT"

# --- servers ---------------------------------------------------------------------------

# start_turnstile NAME: sets SRV_PID, SRV_PORT, SRV_PIDS, SRV_ROW.
start_turnstile() {
    local name=$1
    free_port SRV_PORT
    render "$TPL/turnstile.records.toml" "$WORK/$name.toml" PORT="$SRV_PORT" \
        ORIGIN_PORT="$ORIGIN_PORT" WORK="$WORK" NAME="$name" ACCEPT_THREADS=0 \
        NET_THREADS="$NET_THREADS" CACHE_HTTP=true \
        STORAGE="[{ path = \"$WORK/$name.span\", size = \"256M\" }]"
    service "$TS_BIN" --config "$WORK/$name.toml" >"$WORK/$name.log" 2>&1 &
    SRV_PID=$!
    STARTED+=("$SRV_PID")
    if ! wait_ready "$SRV_PORT" "$SRV_PID" 60; then
        note "Turnstile ($name) did not become ready: $(tail -n 3 "$WORK/$name.log" | tr '\n' ' ')"
        stop_server "$SRV_PID"
        return 1
    fi
    SRV_PIDS=$(tree "$SRV_PID" | sort -u | paste -sd' ' -)
    SRV_ROW="Turnstile (cache on, $NET_THREADS threads)"
}

# start_nginx NAME: sets SRV_PID, SRV_PORT, SRV_PIDS, SRV_ROW.
start_nginx() {
    local name=$1 i n
    free_port SRV_PORT
    rm -rf "$WORK/nginx.cache"
    # Workers run as this user (not nobody, under root), to reach the cache and
    # temporary directories inside WORK (mode 0700).
    render "$TPL/slowhttp.nginx.conf" "$WORK/$name.conf" WORK="$WORK" PORT="$SRV_PORT" \
        ORIGIN_PORT="$ORIGIN_PORT" USER="$(id -un)"
    service nginx -e "$WORK/nginx.error.log" -p "$WORK" -c "$WORK/$name.conf" >"$WORK/$name.out" 2>&1 &
    SRV_PID=$!
    STARTED+=("$SRV_PID")
    if ! wait_ready "$SRV_PORT" "$SRV_PID" 20; then
        note "nginx proxy did not start: $(tail -n 3 "$WORK/nginx.error.log" 2>/dev/null | tr '\n' ' ')"
        stop_server "$SRV_PID"
        return 1
    fi
    for i in $(seq 1 50); do # the master, 2 workers, the cache manager and loader
        SRV_PIDS=$(tree "$SRV_PID" | sort -u | paste -sd' ' -)
        n=$(wc -w <<<"$SRV_PIDS")
        [ "$n" -ge 5 ] && break
        sleep 0.1
    done
    SRV_ROW="nginx $(nginx -v 2>&1 | sed -n 's#.*nginx/\([0-9.]*\).*#\1#p') (proxy_cache, 2 workers)"
}

# --- measures --------------------------------------------------------------------------

# rss_kib PIDS: VmRSS summed over the pids that still exist, KiB.
rss_kib() {
    local p files=()
    for p in $1; do files+=("/proc/$p/status"); done
    awk '/^VmRSS:/ { s += $2 } END { print s + 0 }' "${files[@]}" 2>/dev/null
}

# cpu_ticks PIDS: utime + stime summed over the pids that still exist, clock ticks.
cpu_ticks() {
    local p s f sum=0
    for p in $1; do
        { s=$(<"/proc/$p/stat"); } 2>/dev/null || continue
        read -r -a f <<<"${s##*) }" # f[0] is field 3 (state): utime is 14, stime 15
        sum=$((sum + f[11] + f[12]))
    done
    echo "$sum"
}

now_ms() { date +%s%3N; }
mib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }

# warm PORT PATH: GETs PATH until the answer is a cache hit (Turnstile adds Age, the
# nginx template X-Cache-Status: HIT), at most 10 times; returns 1 if it never is.
warm() {
    local port=$1 path=$2 i headers
    for i in $(seq 1 10); do
        headers=$(curl -s -m 10 -o /dev/null -D - -H 'Host: bench' "http://127.0.0.1:$port$path" | tr -d '\r')
        grep -qiE '^(age:|x-cache-status: *hit)' <<<"$headers" && return 0
        sleep 0.2
    done
    return 1
}

# probe_loop PORT OUT STOP: the normal client. One GET of the small cached object on a
# new connection, then PROBE_PAUSE, until the file STOP exists: "start code seconds"
# lines (start: Unix time of the attempt).
probe_loop() {
    local port=$1 out=$2 stop=$3 start
    while [ ! -e "$stop" ]; do
        start=$EPOCHREALTIME
        printf '%s %s\n' "$start" "$(curl -s -o /dev/null -m "$PROBE_TIMEOUT" -H 'Host: bench' \
            -w '%{http_code} %{time_total}' "http://127.0.0.1:$port$SMALL" 2>/dev/null)" >>"$out"
        sleep "$PROBE_PAUSE"
    done
}

# latency_stats FILE: "p50 / p99 / max ms|failures / requests" from probe_loop's lines.
latency_stats() {
    awk '{ print $3 * 1000 }' "$1" | sort -g | awk '{ v[NR] = $1 }
        END {
            if (NR == 0) { printf "- / - / -"; exit }
            i50 = int(NR * 0.50); if (i50 < NR * 0.50) i50++
            i99 = int(NR * 0.99); if (i99 < NR * 0.99) i99++
            printf "%.1f / %.1f / %.1f", v[i50], v[i99], v[NR] }'
    awk '$2 != 200 { f++ } END { printf "|%d / %d", f, NR }' "$1"
}

# slow_state FILE: slowhttptest's last status block and its end, on one line.
slow_state() {
    sed 's/\x1b\[[0-9;]*[A-Za-z]//g' "$1" | awk '
        /^initializing:/ { i = $2 } /^pending:/ { p = $2 } /^connected:/ { c = $2 }
        /^error:/ { e = $2 } /^closed:/ { cl = $2 } /^service available:/ { a = $3 }
        /^Test ended on/ { end = $4 } /^Exit status:/ { sub(/^Exit status: */, ""); x = $0 }
        END { printf "closed %s, pending %s, connected %s, error %s, initializing %s; service available %s; ended on the %s second: %s",
              cl, p, c, e, i, a, end, x }'
}

ts_metric() { # PORT NAME
    curl -s -m 5 "http://127.0.0.1:$1/_stats" | grep -o "\"$2\": *[0-9]*" | grep -o '[0-9]*$'
}

# attack_args ATTACK PORT: slowhttptest's arguments, one a line.
attack_args() {
    local url=http://127.0.0.1:$2
    printf '%s\n' -c "$CONNS" -r "$RATE" -l "$DURATION" -p "$PROBE_TIMEOUT"
    case "$1" in
        slowloris) printf '%s\n' -H -i "$INTERVAL" -x "$FOLLOW_UP" -u "$url$BIG" ;;
        slowbody) printf '%s\n' -B -i "$INTERVAL" -x "$FOLLOW_UP" -s "$BODY_LEN" -u "$url/post" ;;
        slowread) printf '%s\n' -X -w "$WIN_LO" -y "$WIN_HI" -n "$READ_EVERY" -z "$READ_BYTES" \
            -k "$PIPELINE" -u "$url$BIG" ;;
    esac
}

declare -A LABEL=(
    [slowloris]="slowloris (-H, $BIG)"
    [slowbody]="slow body (-B, POST /post)"
    [slowread]="slow read (-X -k $PIPELINE, $BIG)"
)

# run_attack SERVER ATTACK: a fresh server, warmed, attacked, measured, stopped.
run_attack() {
    local server=$1 attack=$2 tag=$1-$2 args out probe_out stop probe_pid att_pid
    local rss peak=0 before after t0 t1 c0 c1 cpu deadline limited="" state lat
    local hits0="" miss0="" hits1 miss1
    "start_$server" "$tag" || return
    log "$SRV_ROW on 127.0.0.1:$SRV_PORT, pids $SRV_PIDS"
    if ! warm "$SRV_PORT" "$BIG" || ! warm "$SRV_PORT" "$SMALL"; then
        note "$SRV_ROW / $attack: the objects did not become cache hits after 10 GETs"
    fi
    sleep 1
    before=$(rss_kib "$SRV_PIDS")
    if [ "$server" = turnstile ]; then
        hits0=$(ts_metric "$SRV_PORT" proxy.process.cache.hits)
        miss0=$(ts_metric "$SRV_PORT" proxy.process.cache.misses)
    fi
    mapfile -t args < <(attack_args "$attack" "$SRV_PORT")
    out=$WORK/$tag.slowhttptest
    probe_out=$WORK/$tag.probe
    stop=$WORK/$tag.stop
    : >"$probe_out"
    log "$SRV_ROW / $attack: slowhttptest ${args[*]}"

    t0=$(now_ms)
    c0=$(cpu_ticks "$SRV_PIDS")
    slowhttptest "${args[@]}" >"$out" 2>&1 &
    att_pid=$!
    STARTED+=("$att_pid")
    probe_loop "$SRV_PORT" "$probe_out" "$stop" &
    probe_pid=$!
    STARTED+=("$probe_pid")
    deadline=$((SECONDS + DURATION + 60))
    while alive "$att_pid"; do
        rss=$(rss_kib "$SRV_PIDS")
        echo "$(now_ms) $rss" >>"$WORK/$tag.rss"
        [ "$rss" -gt "$peak" ] && peak=$rss
        if [ "$rss" -gt $((RSS_LIMIT_MIB * 1024)) ]; then
            limited=" (stopped at RSS_LIMIT_MIB=$RSS_LIMIT_MIB)"
            note "$SRV_ROW / $attack: RSS $(mib "$rss") MiB passed RSS_LIMIT_MIB=$RSS_LIMIT_MIB; attack stopped"
            break
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            note "$SRV_ROW / $attack: slowhttptest still running $((DURATION + 60)) s after its start; stopped"
            break
        fi
        sleep "$SAMPLE_EVERY"
    done
    t1=$(now_ms)
    c1=$(cpu_ticks "$SRV_PIDS")
    stop_server "$att_pid"
    touch "$stop"
    wait "$probe_pid" 2>/dev/null # returns within PROBE_TIMEOUT + PROBE_PAUSE
    stop_server "$probe_pid"

    sleep "$SETTLE"
    after=$(rss_kib "$SRV_PIDS")
    alive "$SRV_PID" || note "$SRV_ROW / $attack: the server exited during the attack"
    cpu=$(awk -v d=$((c1 - c0)) -v hz="$HZ" -v ms=$((t1 - t0)) \
        'BEGIN { printf "%.1f", (ms > 0) ? d / hz / (ms / 1000) * 100 : 0 }')
    lat=$(latency_stats "$probe_out")
    ROWS+=("| $SRV_ROW | ${LABEL[$attack]}$limited | $(mib "$before") | $(mib "$peak") | $(mib "$after") | $cpu | ${lat%%|*} | ${lat#*|} |")
    state="slowhttptest at the end: $(slow_state "$out")"
    if [ "$server" = turnstile ]; then
        hits1=$(ts_metric "$SRV_PORT" proxy.process.cache.hits)
        miss1=$(ts_metric "$SRV_PORT" proxy.process.cache.misses)
        if [ -n "$hits0" ] && [ -n "$miss0" ] && [ -n "$hits1" ] && [ -n "$miss1" ]; then
            state+="; Turnstile's cache hits / misses during the run: $((hits1 - hits0)) / $((miss1 - miss0))"
        fi
    fi
    note "$SRV_ROW / ${LABEL[$attack]}: $state"
    log "$SRV_ROW / $attack: RSS $(mib "$before") -> peak $(mib "$peak") -> after $(mib "$after") MiB, CPU $cpu %, normal client ${lat%%|*} ms, failures ${lat#*|}"
    stop_server "$SRV_PID"
    rm -f "$WORK/$tag.span"
}

START_TIME=$(date +%s)
for attack in $ATTACKS; do
    case "$attack" in
        slowloris | slowbody | slowread) ;;
        *) note "unknown attack '$attack' (slowloris, slowbody, slowread)"; continue ;;
    esac
    for server in $SERVERS; do
        case "$server" in
            turnstile | nginx) run_attack "$server" "$attack" ;;
            *) note "unknown server '$server' (turnstile, nginx)" ;;
        esac
    done
done

# --- report ----------------------------------------------------------------------------

echo
echo "## Slow HTTP attacks on 127.0.0.1 ($(nproc) CPUs, $(uname -r); $(date -u +%Y-%m-%dT%H:%MZ))"
echo
echo "slowhttptest $(slowhttptest -h 2>&1 | sed -n 's/.*version \([0-9][0-9.]*\).*/\1/p' | head -n 1):" \
    "$CONNS connections at $RATE/s, ${DURATION} s each attack; slowloris and slow body: -i $INTERVAL" \
    "-x $FOLLOW_UP (slow body -s $BODY_LEN); slow read: -w $WIN_LO -y $WIN_HI -n $READ_EVERY" \
    "-z $READ_BYTES -k $PIPELINE on the cached 1 MiB object. A fresh server per attack, its" \
    "cache warmed first. RSS: VmRSS summed over the server's processes (before the attack," \
    "its peak, and $SETTLE s after the attack's connections closed); CPU: user+sys over the" \
    "attack, % of one core. Normal client: a GET of a cached 1 KiB object on a new" \
    "connection, ${PROBE_PAUSE} s after the one before (curl -m $PROBE_TIMEOUT), latency over every attempt," \
    "failures = non-200 or curl errors / attempts.${TS_DESC:+ Turnstile: $TS_DESC.}"
echo
echo "| server | attack | RSS before MiB | peak RSS MiB | RSS after MiB | CPU % | normal client p50 / p99 / max ms | failures |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
for row in "${ROWS[@]}"; do echo "$row"; done
if [ ${#NOTES[@]} -gt 0 ]; then
    echo
    for n in "${NOTES[@]}"; do echo "- $n"; done
fi
log "done in $(($(date +%s) - START_TIME)) s of benchmarking"
