#!/usr/bin/env bash
# run.sh — what `make run` runs after the services are up and the schema is
# migrated: ingest, processor, the built-in dashboards and (unless
# SIMULATE=0) a low-rate traffic simulator posting to ingest, each a separate
# lcpipe process logging to .run/<name>.log. Prints the URLs, then waits;
# Ctrl-C (or SIGTERM) stops the processes gracefully. The services keep
# running (make services-down stops them).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/bin/lcpipe
RUN_DIR=${RUN_DIR:-$ROOT/.run}
mkdir -p "$RUN_DIR"

export LIVECHAT_WEBHOOK_SECRETS=${LIVECHAT_WEBHOOK_SECRETS:-local-dev-secret}
export INGEST_ADDR=${INGEST_ADDR:-127.0.0.1:8080}
export DASHBOARDS_ADDR=${DASHBOARDS_ADDR:-127.0.0.1:3000}
export SPOOL_DIR=${SPOOL_DIR:-$RUN_DIR/spool}
# The dashboards require a sign-in: a static token, generated once and kept
# in .run (mode 600) unless DASHBOARDS_TOKEN is set; the URL printed below
# signs the browser in.
if [ -z "${DASHBOARDS_TOKEN:-}" ]; then
  if [ ! -s "$RUN_DIR/dashboards.token" ]; then
    (umask 077; od -An -tx1 -N24 /dev/urandom | tr -d ' \n' >"$RUN_DIR/dashboards.token")
  fi
  DASHBOARDS_TOKEN=$(cat "$RUN_DIR/dashboards.token")
fi
export DASHBOARDS_TOKEN
# The freshness canary: ingest posts a synthetic webhook to itself this often
# (pipeline-health dashboard, lcpipe_canary_* metrics); CANARY_INTERVAL=0 turns it off.
export CANARY_INTERVAL=${CANARY_INTERVAL:-30s}
# Each process's admin listener on its own default loopback port.
unset ADMIN_ADDR
SIMULATE=${SIMULATE:-1}
SIMULATE_RATE=${SIMULATE_RATE:-2}

pids=()
cleanup() {
  trap - EXIT INT TERM
  echo "stopping pipeline processes..." >&2
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

start() { # name args...
  local name=$1; shift
  "$BIN" "$@" >>"$RUN_DIR/$name.log" 2>&1 &
  pids+=($!)
  echo "$!" > "$RUN_DIR/$name.pid"
}

wait_http() { # url seconds
  local i
  for i in $(seq 1 $(( $2 * 5 ))); do
    "$BIN" healthcheck "$1" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "no answer from $1; see $RUN_DIR/*.log" >&2
  return 1
}

start ingest ingest
start processor processor
start dashboards dashboards
wait_http "http://$INGEST_ADDR/readyz" 60
wait_http "http://$DASHBOARDS_ADDR/healthz" 60
if [ "$SIMULATE" != "0" ]; then
  start simulate simulate --url "http://$INGEST_ADDR/webhooks/livechat" --secret "$LIVECHAT_WEBHOOK_SECRETS" --rate "$SIMULATE_RATE"
fi

cat <<MSG

  lcpipe is running on local services
    webhooks    http://$INGEST_ADDR/webhooks/livechat   (secret: LIVECHAT_WEBHOOK_SECRETS)
    dashboards  http://$DASHBOARDS_ADDR/?token=$DASHBOARDS_TOKEN
                (sign-in link; the token is DASHBOARDS_TOKEN, kept in $RUN_DIR/dashboards.token)
    health      http://$INGEST_ADDR/readyz
    admin       ingest http://127.0.0.1:9480  processor http://127.0.0.1:9481  dashboards http://127.0.0.1:9482
                (/healthz /readyz /metrics; ADMIN_PPROF=true adds /debug/pprof/)
    canary      every $CANARY_INTERVAL (pipeline health dashboard; CANARY_INTERVAL=0 turns it off)
    ClickHouse  clickhouse-client --port 9000 -d livechat   (read-only: --user analyst --password analyst)
    Kafka       127.0.0.1:9092  (topics livechat.webhooks.raw, livechat.webhooks.dlq)
    logs        $RUN_DIR/{ingest,processor,dashboards,simulate}.log
  simulator: $( [ "$SIMULATE" != "0" ] && echo "on, ~$SIMULATE_RATE chats/s (SIMULATE=0 turns it off)" || echo off )
  Ctrl-C stops the pipeline; make services-down stops Kafka and ClickHouse.

MSG
# Exit when any process dies (the trap stops the rest).
wait -n "${pids[@]}"
echo "a pipeline process exited; see $RUN_DIR/*.log" >&2
exit 1
