#!/usr/bin/env bash
# make demo: the function under `cargo lambda watch`, moto as Secrets Manager and the
# PagerDuty stand-in, all on loopback; the CONTRACT.md example alert and its recovery go
# through the local function URL, and what PagerDuty received is printed. Everything
# started here is stopped on exit, Ctrl-C included.
set -euo pipefail
cd "$(dirname "$0")/.."

MOTO_PORT=${MOTO_PORT:-45661}
STANDIN_PORT=${STANDIN_PORT:-45662}
INVOKE_PORT=${INVOKE_PORT:-45663}
TOKEN=demo-webhook-token
ROUTING_KEY=demoR0utingKey0000000000000000ab   # 32 characters, like a real one
SECRET_ID=guance-pagerduty-demo
# Logs and the env file live outside the crate, or the watcher would rebuild forever.
WORK=$(mktemp -d -t guance-pagerduty-demo.XXXXXX)
URL="http://127.0.0.1:${INVOKE_PORT}/lambda-url/bootstrap"

source tools/local-stack.sh

echo "== building the function and the PagerDuty stand-in"
cargo build --locked --bin bootstrap --example pagerduty-standin

start_moto
start_standin
function_env >"$WORK/function.env"

echo "== starting cargo lambda watch on 127.0.0.1:${INVOKE_PORT}"
setsid .venv/bin/cargo-lambda lambda watch --quiet --ignore-changes \
  -A 127.0.0.1 -P "$INVOKE_PORT" --env-file "$WORK/function.env" >"$WORK/watch.log" 2>&1 &
pids+=($!)
wait_for "$URL/" watch 600

send() { # title, body file
  echo
  echo "== $1: POST $URL/?token=<token>"
  .venv/bin/python -c 'import json,sys; print(json.load(open(sys.argv[1]))["body"])' "$2" \
    | curl -s -w '\nHTTP %{http_code}\n' -H 'content-type: application/json' \
        --data-binary @- "$URL/?token=${TOKEN}"
}
echo
echo "== health check: GET $URL/"
curl -s -w '\nHTTP %{http_code}\n' "$URL/"
send "the CONTRACT.md example alert" events/alert.json
send "its recovery" events/recovery.json
echo
echo "== a stranger without the token"
curl -s -w '\nHTTP %{http_code}\n' -H 'content-type: application/json' --data-binary '{"df_status":"critical"}' "$URL/"

show_received
echo
echo "== the function's log lines for those events"
# cargo lambda watch relays the function's output with a little delay.
for _ in $(seq 20); do
  [ "$(grep -c '"event delivered to PagerDuty"' "$WORK/watch.log" || true)" -ge 2 ] && break
  sleep 0.25
done
grep -h '"event delivered to PagerDuty"' "$WORK/watch.log" | sed -e 's/\x1b\[[0-9;]*m//g' | tail -n 5 || true
