#!/usr/bin/env bash
# make demo: queue mode, all on loopback. The function runs under `cargo lambda watch`;
# moto serves Secrets Manager and the SQS FIFO queues; a local stand-in for Lambda's
# event source mapping (examples/sqs-event-source.rs) feeds the queue to the same
# function; the PagerDuty stand-in receives. The CONTRACT.md example alert and its
# recovery go through the function URL; then PagerDuty goes down, alerts keep being
# answered 202, and once it is back they arrive in order. Then two-way: make
# pagerduty-webhook and make guance-workspace wire it, a person resolves an incident in
# the PagerDuty stand-in, whose signed webhook comes back to the function, and the Guance
# stand-in shows the event's restore. Everything started here is stopped on exit, Ctrl-C
# included.
set -euo pipefail
cd "$(dirname "$0")/.."

MOTO_PORT=${MOTO_PORT:-45661}
STANDIN_PORT=${STANDIN_PORT:-45662}
INVOKE_PORT=${INVOKE_PORT:-45663}
GUANCE_PORT=${GUANCE_PORT:-45664}
# Two-way: PagerDuty's REST API key (the stand-in allows it) and a Guance workspace's key.
PD_API_TOKEN=demo-pagerduty-rest-api-key
DEMO_WORKSPACE=wksp_968577392a1c4714a464cd2f6ee42a9c  # the CONTRACT.md example's
DEMO_GUANCE_KEY=demoGuanceApiKey0123456789abcdef
TOKEN=demo-webhook-token
ROUTING_KEY=demoR0utingKey0000000000000000ab   # 32 characters, like a real one
SECRET_ID=guance-pagerduty-demo
# Logs and the env file live outside the crate, or the watcher would rebuild forever.
WORK=$(mktemp -d -t guance-pagerduty-demo.XXXXXX)
URL="http://127.0.0.1:${INVOKE_PORT}/lambda-url/bootstrap"

source tools/local-stack.sh

echo "== building the function and the stand-ins (PagerDuty, Guance OpenAPI, the event source mapping)"
cargo build --locked --bin bootstrap --example pagerduty-standin --example guance-standin --example sqs-event-source

start_moto
create_queues
start_standin
start_guance "${DEMO_WORKSPACE}=${DEMO_GUANCE_KEY}"
function_env >"$WORK/function.env"

echo "== starting cargo lambda watch on 127.0.0.1:${INVOKE_PORT}"
# RUST_LOG reaches the function through the env file. The watcher itself runs without it:
# at DEBUG and TRACE cargo lambda logs each request's URL, ?token= included.
setsid env -u RUST_LOG .venv/bin/cargo-lambda lambda watch --quiet --ignore-changes \
  -A 127.0.0.1 -P "$INVOKE_PORT" --env-file "$WORK/function.env" >"$WORK/watch.log" 2>&1 &
pids+=($!)
wait_for "$URL/" watch 600

echo "== starting the local event source mapping (delivery queue -> function)"
setsid target/debug/examples/sqs-event-source "http://127.0.0.1:${MOTO_PORT}" "$QUEUE_URL" \
  "http://127.0.0.1:${INVOKE_PORT}/2015-03-31/functions/bootstrap/invocations" >"$WORK/mapping.log" 2>&1 &
pids+=($!)

send() { # title, body file
  echo
  echo "== $1: POST $URL/?token=<token>"
  .venv/bin/python -c 'import json,sys; print(json.load(open(sys.argv[1]))["body"])' "$2" \
    | curl -s -w '\nHTTP %{http_code}\n' -H 'content-type: application/json' \
        --data-binary @- "$URL/?token=${TOKEN}"
}
alert() { # n, status: a Guance event of its own for alert n
  printf '== alert %s %-8s POST %s/?token=<token> ' "$1" "$2" "$URL"
  printf '{"df_status":"%s","df_title":"demo alert %s","df_event_id":"demo-%s-%s","df_monitor_checker_event_ref":"demo-alert-%s"}' \
    "$2" "$1" "$1" "$2" "$1" \
    | curl -s -o /dev/null -w 'HTTP %{http_code}\n' -H 'content-type: application/json' --data-binary @- "$URL/?token=${TOKEN}"
}
received() { curl -s "http://127.0.0.1:${STANDIN_PORT}/_received" | .venv/bin/python -c 'import json,sys; print(len(json.load(sys.stdin)))'; }
wait_received() { # count, seconds
  local deadline=$((SECONDS + $2))
  until [ "$(received)" -ge "$1" ] || ((SECONDS > deadline)); do sleep 0.5; done
}
echo
echo "== health check: GET $URL/"
curl -s -w '\nHTTP %{http_code}\n' "$URL/"
send "the CONTRACT.md example alert" events/alert.json
send "its recovery" events/recovery.json
echo
echo "== a stranger without the token"
curl -s -w '\nHTTP %{http_code}\n' -H 'content-type: application/json' --data-binary '{"df_status":"critical"}' "$URL/"
wait_received 2 60
show_received

echo
echo "== PagerDuty goes down"
curl -s -o /dev/null -XPOST --data on "http://127.0.0.1:${STANDIN_PORT}/_outage"
for n in 1 2 3; do alert "$n" critical; done
alert 1 ok
alert 2 ok
echo "== waiting 8 s: the dispatcher retries with backoff, the events wait in the queue"
sleep 8
echo "== PagerDuty received meanwhile: $(( $(received) - 2 )) new events"
grep -h "back to the queue" "$WORK/mapping.log" | tail -n 3 || true
echo
echo "== PagerDuty is back"
curl -s -o /dev/null -XPOST --data off "http://127.0.0.1:${STANDIN_PORT}/_outage"
wait_received 7 90
show_received
echo
echo "== the function's log lines for those events"
# cargo lambda watch relays the function's output with a little delay.
for _ in $(seq 20); do
  [ "$(grep -c '"event delivered to PagerDuty"' "$WORK/watch.log" || true)" -ge 7 ] && break
  sleep 0.25
done
grep -h '"event delivered to PagerDuty"' "$WORK/watch.log" | sed -e 's/\x1b\[[0-9;]*m//g' | tail -n 5 || true
echo
echo "== the CloudWatch metrics the function wrote meanwhile (Embedded Metric Format lines): events by outcome, requests refused whole by reason"
sed -e 's/\x1b\[[0-9;]*m//g' "$WORK/watch.log" | python3 -c '
import collections, json, sys
events, refused = collections.Counter(), collections.Counter()
for line in sys.stdin:
    start = line.find("{")
    if start < 0 or "\"_aws\"" not in line:
        continue
    try:
        doc = json.loads(line[start:])
    except ValueError:
        continue
    if "Events" in doc:
        events[doc["Outcome"]] += doc["Events"]
    if "RequestsRefused" in doc:
        refused[doc["Reason"]] += doc["RequestsRefused"]
print("events:", ", ".join(f"{outcome}: {n}" for outcome, n in sorted(events.items())))
print("requests refused:", ", ".join(f"{reason}: {n}" for reason, n in sorted(refused.items())))'

echo
echo "== two-way: a person resolves the incident in PagerDuty, and Guance's event is recovered"
# The AWS side of the two make targets: moto, and this secret.
export AWS_ENDPOINT_URL="http://127.0.0.1:${MOTO_PORT}" AWS_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing SECRET_ID
echo "== make pagerduty-webhook: the v3 subscription in the PagerDuty stand-in, its signing secret into the secret"
PAGERDUTY_API_URL="http://127.0.0.1:${STANDIN_PORT}" PAGERDUTY_API_TOKEN="$PD_API_TOKEN" \
  PAGERDUTY_READ_TOKEN="$PD_API_TOKEN" FUNCTION_URL="$URL" \
  make --no-print-directory pagerduty-webhook
echo "== make guance-workspace: the workspace's OpenAPI key and host into the secret"
GUANCE_WORKSPACE_UUID="$DEMO_WORKSPACE" GUANCE_API_KEY="$DEMO_GUANCE_KEY" \
  GUANCE_OPENAPI_URL="http://127.0.0.1:${GUANCE_PORT}" make --no-print-directory guance-workspace
printf '{"df_status":"critical","df_title":"demo two-way alert","df_event_id":"demo-two-way","df_workspace_uuid":"%s","df_monitor_checker_event_ref":"demo-two-way-ref"}' \
  "$DEMO_WORKSPACE" | curl -s -o /dev/null -w '== the two-way demo alert: HTTP %{http_code}\n' \
  -H 'content-type: application/json' --data-binary @- "$URL/?token=${TOKEN}"
wait_received 8 60
echo "== a person resolves it in PagerDuty (the stand-in posts the signed incident.resolved to $URL/pagerduty/webhook)"
curl -s -XPOST -H 'content-type: application/json' --data '{"dedup_key":"demo-two-way-ref"}' \
  "http://127.0.0.1:${STANDIN_PORT}/_resolve" | .venv/bin/python -c '
import json, sys
answer = json.load(sys.stdin)
print("incident", answer["incident"]["id"], answer["incident"]["status"])
for post in answer.get("posts", []):
    print("webhook delivered to", post["url"], "-> HTTP", post["status"], post.get("body"))
'
show_restores

echo
echo "== no loop: Guance recovers alert 3 itself; the bridge resolves it in PagerDuty, whose webhook comes back and is ignored"
alert 3 ok
posts() { curl -s "http://127.0.0.1:${STANDIN_PORT}/_webhook_posts" | .venv/bin/python -c 'import json,sys; print(len(json.load(sys.stdin)))'; }
deadline=$((SECONDS + 60))
until [ "$(posts)" -ge 2 ] || ((SECONDS > deadline)); do sleep 0.5; done
curl -s "http://127.0.0.1:${STANDIN_PORT}/_webhook_posts" | .venv/bin/python -c '
import json, sys
post = json.load(sys.stdin)[-1]
agent = json.loads(post["delivery"])["event"]["agent"]["type"] if isinstance(post["delivery"], str) else post["delivery"]["event"]["agent"]["type"]
print(post["event_type"], "by", agent, "-> HTTP", post["status"], post["body"])
'
show_restores
