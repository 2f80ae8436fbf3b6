# Shell helpers shared by the benchmark scripts in benches/: set-up, installing,
# building, processes, free ports, templates, readiness, medians. Sourced, not run;
# ROOT and TPL are set on sourcing, WORK, STARTED and log() by bench_setup.

USED_PORTS=${USED_PORTS:- }
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TPL=$ROOT/benches/side_by_side

# bench_setup NAME: log() with NAME as its prefix, WORK (a temporary directory), and an
# exit trap that stops every pid in STARTED (last started first), then removes WORK
# unless KEEP_WORK=1.
bench_setup() {
    BENCH_NAME=$1
    log() { printf '[%s %s] %s\n' "$BENCH_NAME" "$(date +%H:%M:%S)" "$*" >&2; }
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/$BENCH_NAME.XXXXXX") || exit 1
    STARTED=()
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

bench_cleanup() {
    local i
    trap - EXIT INT TERM
    for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do # the origin, started first, last
        stop_tree "${STARTED[$i]}"
    done
    if [ "${KEEP_WORK:-0}" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}

# Prints the direct children of pid $1.
children() {
    local parent=$1 f s d state ppid
    for f in /proc/[0-9]*/stat; do
        { s=$(<"$f"); } 2>/dev/null || continue
        # After the command name: state ppid ...
        read -r state ppid _ <<<"${s##*) }"
        if [ "$ppid" = "$parent" ]; then
            d=${f#/proc/}
            echo "${d%/stat}"
        fi
    done
}

# Prints pid $1 and all its descendants.
tree() {
    local c
    echo "$1"
    for c in $(children "$1"); do
        tree "$c"
    done
}

alive() {
    local s
    { s=$(<"/proc/$1/stat"); } 2>/dev/null || return 1
    s=${s##*) }
    [ "${s%% *}" != Z ]
}

# Stops pid $1 and its descendants: SIGTERM, then SIGKILL after 10 s.
stop_tree() {
    local pid=$1 pids p i
    pids=$(tree "$pid" | sort -u)
    for p in $pids; do kill -TERM "$p" 2>/dev/null; done
    for i in $(seq 1 100); do
        local any=0
        for p in $pids; do alive "$p" && any=1; done
        [ "$any" = 0 ] && break
        sleep 0.1
    done
    for p in $pids; do alive "$p" && kill -KILL "$p" 2>/dev/null; done
    wait "$pid" 2>/dev/null
    return 0
}

# Sets variable $1 to a free TCP port in 20000..31999 (below the ephemeral range).
free_port() {
    local p i hex
    for i in $(seq 1 500); do
        p=$((20000 + RANDOM % 12000))
        case "$USED_PORTS" in *" $p "*) continue ;; esac
        hex=$(printf ':%04X ' "$p")
        if ! grep -qi "$hex" /proc/net/tcp /proc/net/tcp6 2>/dev/null; then
            USED_PORTS+="$p "
            printf -v "$1" '%s' "$p"
            return 0
        fi
    done
    log "no free port found"
    exit 1
}

# render TEMPLATE OUT KEY=VALUE...: replaces @KEY@ by VALUE.
render() {
    local tpl=$1 out=$2 kv k v text
    shift 2
    text=$(<"$tpl")
    for kv in "$@"; do
        k=${kv%%=*}
        v=${kv#*=}
        text=${text//"@$k@"/"$v"}
    done
    printf '%s\n' "$text" >"$out"
}

# wait_ready PORT PID SECONDS: waits for a 200 on GET / (Host: bench) while PID lives.
wait_ready() {
    local port=$1 pid=$2 secs=$3 i code
    for i in $(seq 1 $((secs * 10))); do
        alive "$pid" || return 1
        code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' -H 'Host: bench' "http://127.0.0.1:$port/" 2>/dev/null)
        [ "$code" = 200 ] && return 0
        sleep 0.1
    done
    return 1
}

# median VALUE...: the middle value (mean of the middle two), with the inputs' decimals;
# the first value when any is not a number.
median() {
    local v
    for v in "$@"; do
        [[ $v =~ ^-?[0-9]+(\.[0-9]+)?$ ]] || { printf '%s' "$1"; return; }
    done
    printf '%s\n' "$@" | sort -g | awk '
        { v[NR] = $1; i = index($1, "."); d = i ? length($1) - i : 0; if (d > dec) dec = d }
        END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.*f", dec, m }'
}

have() { command -v "$1" >/dev/null 2>&1; }

# require BINARY...: exits, naming the first of them that is not on PATH.
require() {
    local bin
    for bin in "$@"; do
        have "$bin" || { log "$bin is required; aborting"; exit 1; }
    done
}

# result_values ROW MODE KEY: the KEY=value of every "ROW|MODE|key=value ..." entry of
# the RESULTS array, one per line.
result_values() {
    local r kv
    for r in "${RESULTS[@]}"; do
        if [[ $r == "$1|$2|"* ]]; then
            kv=" ${r#"$1|$2|"}"
            [[ $kv =~ \ $3=([^ ]*) ]] && printf '%s\n' "${BASH_REMATCH[1]}"
        fi
    done
}

# result_median ROW MODE KEY: the median of result_values, or "-" when there is none.
result_median() {
    local vals
    mapfile -t vals < <(result_values "$@")
    if [ ${#vals[@]} = 0 ]; then printf -- '-'; else median "${vals[@]}"; fi
}

# wrk_args close|ka PORT: sets WRK_ARGS to wrk's arguments for a turn of WRK_THREADS
# (1) threads, CONNS connections and SECS seconds against 127.0.0.1:PORT, with
# Connection: close for close (wrk then reconnects per request).
wrk_args() {
    WRK_ARGS=(-t"${WRK_THREADS:-1}" -c"$CONNS" -d"${SECS}s")
    [ "$1" = close ] && WRK_ARGS+=(-H "Connection: close")
    WRK_ARGS+=(-H "Host: bench" "http://127.0.0.1:$2/")
}

# wrk_requests OUTPUT / wrk_rps OUTPUT: the request count and the rate in wrk's report.
wrk_requests() { sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' <<<"$1"; }
wrk_rps() { sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' <<<"$1"; }

# spread VALUES...: "min–max".
spread() { printf '%s\n' "$@" | sort -g | sed -n '1p;$p' | paste -sd'-' - | sed 's/-/–/'; }

# cell VALUES...: "median (min–max)".
cell() { printf '%s (%s)' "$(median "$@")" "$(spread "$@")"; }

# to_ms VALUES...: microseconds to milliseconds, one decimal, one per line.
to_ms() { local v; for v in "$@"; do awk -v u="$v" 'BEGIN { printf "%.1f\n", u / 1000 }'; done; }

# ticks PIDS: user and sys clock ticks of the comma-separated pids, summed ("U S").
ticks() {
    local p s u=0 k=0
    for p in ${1//,/ }; do
        { s=$(<"/proc/$p/stat"); } 2>/dev/null || continue
        s=${s##*) }
        read -r -a f <<<"$s"
        u=$((u + f[11]))
        k=$((k + f[12]))
    done
    echo "$u $k"
}

# switches PIDS [KIND]: context switches of every thread of the pids: voluntary and not,
# or KIND alone ("nonvoluntary": the times a thread was made to leave its CPU, as a peer
# it woke preempted it).
switches() {
    local p sum=0
    for p in ${1//,/ }; do
        sum=$((sum + $(cat /proc/"$p"/task/*/status 2>/dev/null |
            awk -v k="^${2:-.*}_ctxt_switches" '$1 ~ k { t += $2 } END { print t + 0 }')))
    done
    echo "$sum"
}

# preemptions PIDS: the involuntary context switches of every thread of the pids.
preemptions() { switches "$1" nonvoluntary; }

# tcp_segments: TCP segments sent since boot, machine-wide (OutSegs, /proc/net/snmp). On
# loopback each one is a receive as well, the TCP work every process here shares.
tcp_segments() {
    awk '/^Tcp:/ && !h { for (i = 1; i <= NF; i++) if ($i == "OutSegs") c = i; h = 1; next }
        /^Tcp:/ { print $c; exit }' /proc/net/snmp
}

# idle_ticks: the machine's idle and iowait time since boot, "IDLE TOTAL" in clock
# ticks over every CPU (/proc/stat).
idle_ticks() {
    awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print $5 + $6, t; exit }' /proc/stat
}

# idle_share "IDLE0 TOTAL0" "IDLE1 TOTAL1": the share of the CPUs' time idle between the
# two readings of idle_ticks.
idle_share() {
    awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " ")
        t = y[2] - x[2]; printf "%.3f", (t > 0 ? (y[1] - x[1]) / t : 0) }'
}

# service CMD...: runs CMD in a session of its own (setsid, same pid), as a daemon that
# forks itself into the background or a systemd unit would be. With the kernel's
# scheduler autogroups (/proc/sys/kernel/sched_autogroup_enabled), CPU is then shared
# between the client and each server as a whole rather than thread by thread: in one
# shared session the load tool's 8 burst threads outnumber a server's 1-2 and starve it,
# and a 6,000-connection burst waits ~200 ms in the listen queue instead of ~30 ms.
# SESSIONS=shared keeps every server in the script's session.
service() {
    if [ "${SESSIONS:-own}" = own ] && have setsid; then
        exec setsid "$@"
    fi
    exec "$@"
}

# start_origin [BYTES]: starts the nginx origin (side_by_side/origin.nginx.conf, a body
# of BYTES, 1024 by default) on a free port in a session of its own, waits until it
# answers; sets ORIGIN_PORT, or exits.
start_origin() {
    local body pid
    body=$(head -c "${1:-1024}" /dev/zero | tr '\0' 'x')
    free_port ORIGIN_PORT
    mkdir -p "$WORK/origin.tmp"
    render "$TPL/origin.nginx.conf" "$WORK/origin.conf" WORK="$WORK" PORT="$ORIGIN_PORT" BODY="$body"
    service nginx -e "$WORK/origin.error.log" -p "$WORK" -c "$WORK/origin.conf" >/dev/null 2>&1 &
    pid=$!
    STARTED+=("$pid")
    wait_ready "$ORIGIN_PORT" "$pid" 30 || { log "the origin did not start (see $WORK)"; exit 1; }
}

# Builds Turnstile and the load tool (release): sets TS_BIN and LOAD, or exits.
build_bins() {
    (cd "$ROOT" && cargo build --release --bin turnstile) >"$WORK/build.log" 2>&1 ||
        { tail -n 30 "$WORK/build.log"; log "cargo build failed"; exit 1; }
    TS_BIN=$ROOT/target/release/turnstile
    LOAD=$( (cd "$ROOT" && cargo bench --bench load --no-run) 2>&1 | tee -a "$WORK/build.log" |
        sed -n 's/.*Executable .*(\(.*\)).*/\1/p' | tail -n 1)
    case "$LOAD" in /*) ;; ?*) LOAD=$ROOT/$LOAD ;; esac
    [ -n "$LOAD" ] && [ -x "$LOAD" ] ||
        { tail -n 30 "$WORK/build.log"; log "cannot build benches/load.rs"; exit 1; }
}

# install_missing PACKAGE:BINARY...: apt-get installs the packages whose binary is not on
# PATH, when INSTALL=1 (the default) and running as root.
install_missing() {
    local pkg bin missing=()
    for pkg in "$@"; do
        bin=${pkg#*:}
        have "$bin" || missing+=("${pkg%%:*}")
    done
    [ ${#missing[@]} = 0 ] && return
    if [ "${INSTALL:-1}" != 1 ] || [ "$(id -u)" != 0 ] || ! have apt-get; then
        log "missing: ${missing[*]} (not installing: INSTALL=${INSTALL:-1}, uid $(id -u))"
        return
    fi
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    for pkg in "${missing[@]}"; do
        apt-get install -y "$pkg" >"$WORK/apt-$pkg.log" 2>&1 ||
            { apt-get update >>"$WORK/apt-$pkg.log" 2>&1 && apt-get install -y "$pkg" >>"$WORK/apt-$pkg.log" 2>&1; } ||
            log "apt-get install $pkg failed (see the log in $WORK, kept with KEEP_WORK=1)"
    done
    # Debian's maintainer scripts may start system instances; ours use their own ports.
}
