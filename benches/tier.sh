#!/usr/bin/env bash
# A cache tier on loopback (README, "A cache tier"): Zipf-distributed URLs (load.rs
# --zipf) against (a) one Turnstile cache with RAM R, (b) a child without a cache
# sending requests in turn (round_robin = "strict") to three parent caches with R/3
# each — the same total RAM, but every parent may hold every URL — and (c) the same with
# round_robin = "consistent_hash", each URL in one parent. Prints, per setup, the hit ratio (1 - origin fetches / requests), the
# origin fetches and the rate; then the child's added latency per request: the same hot
# URL asked of a parent directly and through the child (p50/p99), rounds alternated.
#
#   bash benches/tier.sh
#   URLS=200000 ZIPF_S=0.9 RAM=16M SECS=15 CONNS=16 ROUNDS=3 bash benches/tier.sh
#
# Starts one nginx origin (1000-byte bodies, Cache-Control: max-age=3600) on a free
# 127.0.0.1 port and Turnstiles with one event thread each. Needs nginx and curl
# (INSTALL=1 apt-get installs missing ones as root).

set -u -o pipefail

URLS=${URLS:-200000}
ZIPF_S=${ZIPF_S:-0.9}
RAM=${RAM:-16M}
SECS=${SECS:-15}
CONNS=${CONNS:-16}
ROUNDS=${ROUNDS:-3}
INSTALL=${INSTALL:-1}
# shellcheck source=side_by_side/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/side_by_side/lib.sh"
bench_setup tier

install_missing nginx:nginx curl:curl
require nginx curl
ulimit -n 20000 2>/dev/null
build_bins

# RAM per parent: a third of RAM.
ram_bytes=$(numfmt --from=iec "${RAM}" 2>/dev/null || echo $((16 << 20)))
PARENT_RAM=$((ram_bytes / 3 / 1024))K

free_port ORIGIN_PORT
BODY=$(head -c 1000 /dev/zero | tr '\0' 'x')
mkdir -p "$WORK/origin.tmp"
render "$TPL/origin.nginx.conf" "$WORK/origin.conf" WORK="$WORK" PORT="$ORIGIN_PORT" BODY="$BODY"
service nginx -e "$WORK/origin.error.log" -p "$WORK" -c "$WORK/origin.conf" >/dev/null 2>&1 &
STARTED+=($!)
wait_ready "$ORIGIN_PORT" "$!" 10 || { log "origin did not start"; exit 1; }

# turnstile NAME PORT EXTRA [CACHE_HTTP]: starts a Turnstile (one event thread) whose
# records.toml ends with EXTRA; sets PID.
turnstile() {
    local name=$1 port=$2 extra=$3 cache=${4:-true}
    cat >"$WORK/$name.toml" <<TOML
[proxy.config]
accept_threads = 0
proxy_name = "$name"
[proxy.config.exec_thread]
autoconfig.enabled = false
limit = 1
[proxy.config.http]
server_ports = "$port:ipv4:ip-in=127.0.0.1"
keep_alive_no_activity_timeout_in = 300
cache.http = $cache
[proxy.config.admin]
socket = "$WORK/$name.sock"
$extra
TOML
    service "$TS_BIN" --config "$WORK/$name.toml" >"$WORK/$name.log" 2>&1 &
    PID=$!
    STARTED+=("$PID")
    wait_ready "$port" "$PID" 20 || { log "$name did not start"; tail "$WORK/$name.log"; exit 1; }
}

metric() { # PORT NAME
    curl -s -m 5 "http://127.0.0.1:$1/_stats/csv" | awk -F, -v n="$2" '$1 == n { print $2 }'
}

REMAP="[[remap]]
from = \"/\"
to = \"http://127.0.0.1:$ORIGIN_PORT/\""

# load PORT PATH [ARGS]: one load run; prints its key=value line.
load() {
    local port=$1 path=$2
    shift 2
    "$LOAD" --target "127.0.0.1:$port" --mode ka --conns "$CONNS" --secs "$SECS" --path "$path" "$@" |
        grep '^mode='
}
kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }

log "hit ratio: $URLS URLs, Zipf s=$ZIPF_S, 1000-byte objects, RAM $RAM in one cache vs 3 x $PARENT_RAM; a warm-up run of $SECS s, then the measured one"

# start_parents: three fresh caching parents with a third of the RAM each; sets PARENTS.
start_parents() {
    PARENTS=()
    local i P
    for i in 1 2 3; do
        free_port P
        # The remap rule lets a client ask a parent directly (for the latency figure);
        # the child's absolute-form requests map to the same cache keys.
        turnstile "p$i" "$P" "[proxy.config.url_remap]
remap_required = false
[proxy.config.cache]
ram_cache.size = \"$PARENT_RAM\"
max_doc_size = \"64K\"
$REMAP"
        PARENTS+=("$P")
    done
}

# start_child ROUND_ROBIN: a child without a cache over PARENTS; sets CHILD.
start_child() {
    free_port CHILD
    turnstile "child-$1" "$CHILD" "$REMAP
[[parent]]
dest_domain = \".\"
parents = [\"127.0.0.1:${PARENTS[0]}\", \"127.0.0.1:${PARENTS[1]}\", \"127.0.0.1:${PARENTS[2]}\"]
round_robin = \"$1\"" false
}

# stop_started N: stops the processes started after the first N.
stop_started() {
    local i
    for ((i = ${#STARTED[@]} - 1; i >= $1; i--)); do stop_tree "${STARTED[$i]}"; done
    STARTED=("${STARTED[@]:0:$1}")
}

misses() { # PORT...
    local sum=0 p
    for p in "$@"; do sum=$((sum + $(metric "$p" proxy.process.cache.misses))); done
    echo "$sum"
}
base=${#STARTED[@]}
printf '%-16s %10s %12s %10s %9s %9s %9s\n' setup requests origin_fetch hit_ratio rps p50_us p99_us
for setup in single strict consistent_hash; do
    case $setup in
    single)
        free_port SINGLE
        turnstile single "$SINGLE" "[proxy.config.cache]
ram_cache.size = \"$RAM\"
max_doc_size = \"64K\"
$REMAP"
        port=$SINGLE caches=("$SINGLE") name="one cache"
        ;;
    *)
        start_parents
        start_child "$setup"
        port=$CHILD caches=("${PARENTS[@]}") name="tier, $setup"
        ;;
    esac
    load "$port" /z/ --zipf "$URLS" --zipf-s "$ZIPF_S" >/dev/null
    before=$(misses "${caches[@]}")
    line=$(load "$port" /z/ --zipf "$URLS" --zipf-s "$ZIPF_S")
    after=$(misses "${caches[@]}")
    ok=$(kv ok <<<"$line")
    fetched=$((after - before))
    awk -v s="$name" -v ok="$ok" -v f="$fetched" -v rps="$(kv rps <<<"$line")" \
        -v p50="$(kv p50_us <<<"$line")" -v p99="$(kv p99_us <<<"$line")" \
        'BEGIN { printf "%-16s %10d %12d %9.1f%% %9s %9s %9s\n", s, ok, f, ok ? 100 * (1 - f / ok) : 0, rps, p50, p99 }'
    # The consistent-hash tier stays up for the latency figure.
    [ "$setup" = consistent_hash ] || stop_started "$base"
done

log "added latency: one hot URL, direct to its parent vs through the child, $ROUNDS alternated rounds"
# The hot URL's parent: the one whose request count grows when the child is asked.
curl -s -o /dev/null "http://127.0.0.1:$CHILD/hot"
HOT_PARENT=""
for p in "${PARENTS[@]}"; do
    before=$(metric "$p" proxy.process.http.incoming_requests)
    curl -s -o /dev/null "http://127.0.0.1:$CHILD/hot"
    [ "$(metric "$p" proxy.process.http.incoming_requests)" -gt "$before" ] && HOT_PARENT=$p
done
D50=() D99=() C50=() C99=()
for r in $(seq 1 "$ROUNDS"); do
    # The parent serves /hot from RAM either way.
    d=$(load "$HOT_PARENT" "/hot" --secs 5)
    c=$(load "$CHILD" "/hot" --secs 5)
    D50+=("$(kv p50_us <<<"$d")") D99+=("$(kv p99_us <<<"$d")")
    C50+=("$(kv p50_us <<<"$c")") C99+=("$(kv p99_us <<<"$c")")
    log "round $r: direct p50 ${D50[-1]} us p99 ${D99[-1]} us; through the child p50 ${C50[-1]} us p99 ${C99[-1]} us"
done
d50=$(median "${D50[@]}") d99=$(median "${D99[@]}") c50=$(median "${C50[@]}") c99=$(median "${C99[@]}")
printf 'added latency (medians of %s rounds, %s connections): p50 %s -> %s us (+%s), p99 %s -> %s us (+%s)\n' \
    "$ROUNDS" "$CONNS" "$d50" "$c50" "$((c50 - d50))" "$d99" "$c99" "$((c99 - d99))"
