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

pids=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  echo "demo: stopped everything it started (logs were in $WORK)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_for() { # url, what, seconds
  local deadline=$((SECONDS + $3))
  until curl -s -o /dev/null "$1"; do
    if ((SECONDS > deadline)); then
      echo "demo: $2 did not come up; its log:" >&2
      tail -n 40 "$WORK/$2.log" >&2 || true
      exit 1
    fi
    sleep 0.5
  done
}

echo "== building the function and the PagerDuty stand-in"
cargo build --locked --bin bootstrap --example pagerduty-standin

echo "== starting moto (Secrets Manager) on 127.0.0.1:${MOTO_PORT}"
setsid .venv/bin/moto_server -H 127.0.0.1 -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:${MOTO_PORT}/" moto 60

echo "== creating the secret ${SECRET_ID}"
.venv/bin/python - "$MOTO_PORT" "$SECRET_ID" "$ROUTING_KEY" "$TOKEN" <<'PY'
import json, sys, boto3
port, name, key, token = sys.argv[1:]
sm = boto3.client("secretsmanager", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
sm.create_secret(Name=name, SecretString=json.dumps({"routing_key": key, "webhook_token": token}))
PY

echo "== starting the PagerDuty stand-in on 127.0.0.1:${STANDIN_PORT}"
setsid target/debug/examples/pagerduty-standin "$STANDIN_PORT" >"$WORK/standin.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:${STANDIN_PORT}/_received" standin 30

cat >"$WORK/function.env" <<EOF
PAGERDUTY_SECRET_ID=${SECRET_ID}
PAGERDUTY_EVENTS_URL=http://127.0.0.1:${STANDIN_PORT}/v2/enqueue
AWS_ENDPOINT_URL=http://127.0.0.1:${MOTO_PORT}
AWS_REGION=us-east-1
AWS_ACCESS_KEY_ID=testing
AWS_SECRET_ACCESS_KEY=testing
RUST_LOG=info
EOF

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

echo
echo "== what the PagerDuty stand-in received (routing key masked)"
curl -s "http://127.0.0.1:${STANDIN_PORT}/_received" | .venv/bin/python -c '
import json, sys
events = json.load(sys.stdin)
for e in events:
    p = e.get("payload", {})
    action, key = e["event_action"], e["dedup_key"]
    severity, source, summary = p.get("severity"), p.get("source"), p.get("summary")
    print(f"{action:8} dedup_key={key} severity={severity} source={source} summary={summary}")
print()
for e in events:
    details = e.get("payload", {}).get("custom_details", {})
    e["payload"]["custom_details"] = f"{{... {len(details)} Guance fields, JSON-encoded ones decoded}}"
print(json.dumps(events, ensure_ascii=False, indent=2))
'
echo
echo "== the function's log lines for those events"
# cargo lambda watch relays the function's output with a little delay.
for _ in $(seq 20); do
  [ "$(grep -c '"event delivered to PagerDuty"' "$WORK/watch.log" || true)" -ge 2 ] && break
  sleep 0.25
done
grep -h '"event delivered to PagerDuty"' "$WORK/watch.log" | sed -e 's/\x1b\[[0-9;]*m//g' | tail -n 5 || true
