#!/usr/bin/env bash
# TLS side by side on loopback: Turnstile (rustls), nginx and HAProxy (OpenSSL)
# terminating TLS with the same ECDSA P-256 certificate in front of one nginx origin
# (1 KiB body), driven by the same client (benches/load.rs --tls: rustls, X25519, any
# certificate accepted). All three run at once; each round gives every server a turn of
# each measure, in an order that rotates from round to round (the machine's speed drifts
# over minutes, and alternating short turns puts every server under the same
# conditions). A benchmark, not a test: it asserts nothing.
#
#   bash benches/tls_side_by_side.sh                 # about 4 minutes
#   ROUNDS=3 SECS=3 bash benches/tls_side_by_side.sh # quick
#
# Measures, per server:
#   ka       keep-alive requests over TLS, CONNS connections (req/s, CPU s per 10k)
#   full     a new connection and a full handshake per request, no resumption
#   resumed  a new connection per request, resuming the session (ticket)
#   idle     RSS per idle keep-alive connection after one request, TLS and plain
#            (IDLE_CONNS connections each, held IDLE_HOLD s), first, on fresh processes
#
# Environment: ROUNDS=5 SECS=4 CONNS=64 CLOSE_CONNS=64 IDLE_CONNS=2000 IDLE_HOLD=2
# INSTALL=1 (apt-get install nginx / haproxy if missing) KEEP_WORK=0.

set -u -o pipefail

ROUNDS=${ROUNDS:-5}
SECS=${SECS:-4}
CONNS=${CONNS:-64}
CLOSE_CONNS=${CLOSE_CONNS:-64}
IDLE_CONNS=${IDLE_CONNS:-2000}
IDLE_HOLD=${IDLE_HOLD:-2}
INSTALL=${INSTALL:-1}
MEASURES="ka full resumed"

# shellcheck source=side_by_side/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/side_by_side/lib.sh"
bench_setup tls_side_by_side
RESULTS=() # "server|measure|key=value line"

ulimit -n "$(ulimit -Hn)" 2>/dev/null
install_missing nginx:nginx haproxy:haproxy curl:curl openssl:openssl
require nginx haproxy curl openssl
log "building Turnstile and the load tool (release)"
build_bins

# One ECDSA P-256 certificate for everyone.
CERT=$WORK/cert.pem KEY=$WORK/key.pem PEM=$WORK/both.pem
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$KEY" \
    -out "$CERT" -days 7 -subj "/CN=bench.test" -addext "subjectAltName=DNS:bench.test" \
    >"$WORK/openssl.log" 2>&1 || { cat "$WORK/openssl.log"; exit 1; }
cat "$CERT" "$KEY" >"$PEM"

free_port ORIGIN_PORT
BODY=$(head -c 1024 /dev/zero | tr '\0' 'x')
mkdir -p "$WORK/origin.tmp" "$WORK/nginx.tmp"
render "$TPL/origin.nginx.conf" "$WORK/origin.conf" WORK="$WORK" PORT="$ORIGIN_PORT" BODY="$BODY"
service nginx -e "$WORK/origin.error.log" -p "$WORK" -c "$WORK/origin.conf" >/dev/null 2>&1 &
STARTED+=($!)
wait_ready "$ORIGIN_PORT" "${STARTED[-1]}" 20 || { log "origin did not start"; exit 1; }

declare -A PORT PLAIN PID
for s in turnstile nginx haproxy; do
    free_port "PORT[$s]"
    free_port "PLAIN[$s]"
done
# start_servers: Turnstile, nginx and HAProxy, fresh, each with a TLS and a plain port.
start_servers() {
    render "$TPL/tls.turnstile.records.toml" "$WORK/ts.toml" PORT="${PORT[turnstile]}" \
        PLAIN_PORT="${PLAIN[turnstile]}" ORIGIN_PORT="$ORIGIN_PORT" WORK="$WORK" CERT="$CERT" KEY="$KEY"
    service "$TS_BIN" --config "$WORK/ts.toml" >"$WORK/ts.log" 2>&1 &
    PID[turnstile]=$!
    STARTED+=("${PID[turnstile]}")
    render "$TPL/tls.nginx.conf" "$WORK/nginx.conf" WORK="$WORK" PORT="${PORT[nginx]}" \
        PLAIN_PORT="${PLAIN[nginx]}" ORIGIN_PORT="$ORIGIN_PORT" CERT="$CERT" KEY="$KEY"
    service nginx -e "$WORK/nginx.error.log" -p "$WORK" -c "$WORK/nginx.conf" >/dev/null 2>&1 &
    PID[nginx]=$!
    STARTED+=("${PID[nginx]}")
    render "$TPL/tls.haproxy.cfg" "$WORK/haproxy.cfg" PORT="${PORT[haproxy]}" \
        PLAIN_PORT="${PLAIN[haproxy]}" ORIGIN_PORT="$ORIGIN_PORT" PEM="$PEM" MAXCONN=9000
    service haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
    PID[haproxy]=$!
    STARTED+=("${PID[haproxy]}")
    local s code
    for s in turnstile nginx haproxy; do
        wait_ready "${PLAIN[$s]}" "${PID[$s]}" 30 || { log "$s did not start"; exit 1; }
        code=$(curl -sk -o /dev/null -w '%{http_code}' --resolve "bench.test:${PORT[$s]}:127.0.0.1" \
            "https://bench.test:${PORT[$s]}/")
        [ "$code" = 200 ] || { log "$s: TLS GET answered $code"; exit 1; }
    done
}

stop_servers() {
    local s p i
    for s in turnstile nginx haproxy; do
        stop_tree "${PID[$s]}"
        for i in "${!STARTED[@]}"; do
            [ "${STARTED[$i]}" = "${PID[$s]}" ] && unset 'STARTED[i]'
        done
    done
    STARTED=("${STARTED[@]}")
}

start_servers
log "versions: $(nginx -v 2>&1 | sed 's/.*\///'), $(haproxy -v | head -n 1 | awk '{print $3}'), $(openssl version)"

# pids SERVER: the server's processes (nginx: master and workers).
pids() { tree "${PID[$1]}" | paste -sd, -; }

# measure SERVER MEASURE
measure() {
    local s=$1 m=$2 out kv args
    case $m in
    ka) args=(--mode ka --conns "$CONNS" --secs "$SECS" --tls bench.test --target "127.0.0.1:${PORT[$s]}") ;;
    full) args=(--mode close --conns "$CLOSE_CONNS" --secs "$SECS" --tls bench.test --target "127.0.0.1:${PORT[$s]}") ;;
    resumed) args=(--mode close --conns "$CLOSE_CONNS" --secs "$SECS" --tls bench.test --resume 1 --target "127.0.0.1:${PORT[$s]}") ;;
    idle_tls) args=(--mode idle --conns "$IDLE_CONNS" --hold-secs "$IDLE_HOLD" --tls bench.test --target "127.0.0.1:${PORT[$s]}") ;;
    idle_plain) args=(--mode idle --conns "$IDLE_CONNS" --hold-secs "$IDLE_HOLD" --target "127.0.0.1:${PLAIN[$s]}") ;;
    esac
    out=$(timeout -k 5 $((SECS + IDLE_HOLD + 120)) "$LOAD" "${args[@]}" --pid "$(pids "$s")" 2>&1)
    kv=$(grep -m1 '^mode=' <<<"$out")
    [ -n "$kv" ] || { log "$s $m: load tool failed: $(tail -n 2 <<<"$out" | tr '\n' ' ')"; return; }
    log "$s $m: $(grep -m1 '^# ' <<<"$out" | cut -c3-)"
    RESULTS+=("$s|$m|$kv")
}

# get SERVER MEASURE KEY: median over the rounds.
get() { result_median "$@"; }

# range SERVER MEASURE KEY: "min–max" over the rounds, or "-".
range() {
    local vals
    mapfile -t vals < <(result_values "$@")
    if [ ${#vals[@]} = 0 ]; then printf -- '-'; else spread "${vals[@]}"; fi
}

SERVERS=(turnstile nginx haproxy)
# Memory first, on fresh processes (after load, an allocator hands idle connections
# memory it already holds): plain, then a restart, then TLS.
for s in "${SERVERS[@]}"; do
    measure "$s" idle_plain
done
stop_servers
start_servers
for s in "${SERVERS[@]}"; do
    measure "$s" idle_tls
done
for round in $(seq 1 "$ROUNDS"); do
    log "round $round of $ROUNDS"
    for m in $MEASURES; do
        for i in 0 1 2; do
            s=${SERVERS[$(((i + round) % 3))]}
            measure "$s" "$m"
        done
    done
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else printf "-" }'; }

echo
echo "TLS, $ROUNDS rounds of ${SECS} s turns (medians, range in brackets); $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "| server | ka req/s | ka CPU s/10k | full handshakes/s | full CPU s/10k | resumed/s | resumed CPU s/10k | idle KiB/conn TLS | idle KiB/conn plain |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for s in "${SERVERS[@]}"; do
    printf '| %s | %s (%s) | %s | %s (%s) | %s | %s (%s) | %s | %s | %s |\n' "$s" \
        "$(get "$s" ka rps)" "$(range "$s" ka rps)" "$(get "$s" ka cpu_s_per_10k)" \
        "$(get "$s" full rps)" "$(range "$s" full rps)" "$(get "$s" full cpu_s_per_10k)" \
        "$(get "$s" resumed rps)" "$(range "$s" resumed rps)" "$(get "$s" resumed cpu_s_per_10k)" \
        "$(get "$s" idle_tls rss_kib_per_conn)" "$(get "$s" idle_plain rss_kib_per_conn)"
done
echo
echo "| Turnstile ÷ peer | ka req/s | full/s | resumed/s | ka CPU | full CPU | resumed CPU |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for p in nginx haproxy; do
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$p" \
        "$(ratio "$(get turnstile ka rps)" "$(get "$p" ka rps)")" \
        "$(ratio "$(get turnstile full rps)" "$(get "$p" full rps)")" \
        "$(ratio "$(get turnstile resumed rps)" "$(get "$p" resumed rps)")" \
        "$(ratio "$(get turnstile ka cpu_s_per_10k)" "$(get "$p" ka cpu_s_per_10k)")" \
        "$(ratio "$(get turnstile full cpu_s_per_10k)" "$(get "$p" full cpu_s_per_10k)")" \
        "$(ratio "$(get turnstile resumed cpu_s_per_10k)" "$(get "$p" resumed cpu_s_per_10k)")"
done
echo
echo "Raw lines:"
printf '%s\n' "${RESULTS[@]}"
