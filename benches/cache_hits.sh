#!/usr/bin/env bash
# Cache hits by kind, with wrk: a 200 hit of a 1 KiB object, a 304 answered from the
# cache to a conditional request for it (If-None-Match), a 1 KiB range (206) of a 1 MiB
# object, and the whole 1 MiB object, through each Turnstile build of BINS in turn,
# ROUNDS alternating rounds, behind one nginx origin serving static files. Prints req/s,
# Turnstile's CPU per 10k requests (user+sys from /proc) and the TCP segments the
# machine sent per request (/proc/net/snmp), medians over the rounds.
# A benchmark, not a test: compare rows of one run only.
#
#   bash benches/cache_hits.sh                          # this tree's release build
#   BINS="/path/old/turnstile /path/new/turnstile" ROUNDS=5 bash benches/cache_hits.sh
#
# Environment: BINS (default: this tree's build), ROUNDS=3, SECS=4 (per turn), CONNS=32,
# INSTALL=1 (apt-get installs missing nginx, wrk, curl). Everything on 127.0.0.1.

set -u -o pipefail

ROUNDS=${ROUNDS:-3}
SECS=${SECS:-4}
CONNS=${CONNS:-32}
INSTALL=${INSTALL:-1}
# shellcheck source=side_by_side/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/side_by_side/lib.sh"
bench_setup cache_hits

install_missing nginx:nginx wrk:wrk curl:curl
require nginx wrk curl
if [ -z "${BINS:-}" ]; then
    build_bins
    BINS=$TS_BIN
fi

free_port ORIGIN_PORT
mkdir -p "$WORK/www" "$WORK/origin.tmp"
head -c 1024 /dev/urandom >"$WORK/www/small"
head -c $((1 << 20)) /dev/urandom >"$WORK/www/big"
render "$TPL/cache_hits.origin.nginx.conf" "$WORK/origin.conf" WORK="$WORK" PORT="$ORIGIN_PORT"
(service nginx -p "$WORK" -c "$WORK/origin.conf" -e "$WORK/origin.error.log") >/dev/null 2>&1 &
STARTED+=($!)

# cpu_ticks PID: utime + stime of PID, in clock ticks.
cpu_ticks() {
    local u k
    read -r u k <<<"$(ticks "$1")"
    echo $((u + k))
}

KINDS=(hit200 hit304 range206 whole1m)
declare -A RPS CPU SEG

i=0
for bin in $BINS; do
    i=$((i + 1))
    free_port "PORT_$i"
done

for round in $(seq 1 "$ROUNDS"); do
    i=0
    for bin in $BINS; do
        i=$((i + 1))
        port_var="PORT_$i"
        port=${!port_var}
        name="b$i"
        rm -rf "$WORK/span$i"
        mkdir -p "$WORK/span$i"
        render "$TPL/turnstile.records.toml" "$WORK/$name.toml" PORT="$port" ORIGIN_PORT="$ORIGIN_PORT" \
            WORK="$WORK" NAME="$name" ACCEPT_THREADS=0 NET_THREADS=2 CACHE_HTTP=true \
            STORAGE="[{ path = \"$WORK/span$i\", size = \"256M\" }]"
        (service "$bin" --config "$WORK/$name.toml") >"$WORK/$name.log" 2>&1 &
        pid=$!
        STARTED+=("$pid")
        for _ in $(seq 1 100); do
            curl -s -o /dev/null "http://127.0.0.1:$port/small" && break
            sleep 0.1
        done
        curl -s -o /dev/null "http://127.0.0.1:$port/big"
        etag=$(curl -s -D - -o /dev/null "http://127.0.0.1:$port/small" | tr -d '\r' |
            sed -n 's/^[Ee][Tt][Aa][Gg]: //p')
        for kind in "${KINDS[@]}"; do
            case $kind in
                hit200) args=("http://127.0.0.1:$port/small") ;;
                hit304) args=(-H "If-None-Match: $etag" "http://127.0.0.1:$port/small") ;;
                range206) args=(-H "Range: bytes=1000-2023" "http://127.0.0.1:$port/big") ;;
                whole1m) args=("http://127.0.0.1:$port/big") ;;
            esac
            before=$(cpu_ticks "$pid") seg0=$(tcp_segments)
            out=$(wrk -t1 -c"$CONNS" -d"${SECS}s" "${args[@]}" 2>&1)
            after=$(cpu_ticks "$pid") seg1=$(tcp_segments)
            reqs=$(wrk_requests "$out")
            rps=$(wrk_rps "$out")
            non2xx=$(sed -n 's/.*Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p' <<<"$out")
            [ -n "$non2xx" ] && log "$name $kind: $non2xx non-2xx/3xx responses"
            hz=$(getconf CLK_TCK)
            cpu=$(awk -v t=$((after - before)) -v hz="$hz" -v n="${reqs:-0}" \
                'BEGIN { if (n > 0) printf "%.3f", t / hz / n * 10000; else print "na" }')
            seg=$(awk -v g=$((seg1 - seg0)) -v n="${reqs:-0}" \
                'BEGIN { if (n > 0) printf "%.2f", g / n; else print "na" }')
            RPS[$i,$kind]+="${rps%.*} "
            CPU[$i,$kind]+="$cpu "
            SEG[$i,$kind]+="$seg "
            log "round $round $name ($bin) $kind: ${rps%.*} req/s, $cpu CPU s/10k, $seg TCP segments"
        done
        stop_tree "$pid"
    done
done

printf '\n| build | %s |\n' "$(printf '%s req/s (CPU s/10k, TCP segments) | ' "${KINDS[@]}" | sed 's/ | $//')"
printf '|---|%s\n' "$(printf -- '---:|%.0s' "${KINDS[@]}")"
i=0
for bin in $BINS; do
    i=$((i + 1))
    row="| $bin |"
    for kind in "${KINDS[@]}"; do
        # shellcheck disable=SC2086
        row+=" $(median ${RPS[$i,$kind]}) ($(median ${CPU[$i,$kind]}), $(median ${SEG[$i,$kind]})) |"
    done
    echo "$row"
done
