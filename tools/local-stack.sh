# Sourced by tools/demo.sh and tools/invoke.sh: the local stand-ins for AWS and PagerDuty
# on loopback (moto, the PagerDuty stand-in), started in their own process groups and all
# stopped on exit, Ctrl-C included. A local tool, not part of the product.
#
# The caller sets MOTO_PORT, STANDIN_PORT, SECRET_ID, ROUTING_KEY, TOKEN, WORK (a folder
# outside the crate for logs) before calling these; for two-way also GUANCE_PORT and
# PD_API_TOKEN, and SECRET_EXTRA (a JSON object of more secret fields) if any.

pids=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  echo "stopped everything started here (logs were in $WORK)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_for() { # url, what, seconds
  local deadline=$((SECONDS + $3))
  until curl -s -o /dev/null "$1"; do
    if ((SECONDS > deadline)); then
      echo "$2 did not come up; its log:" >&2
      tail -n 40 "$WORK/$2.log" >&2 || true
      exit 1
    fi
    sleep 0.5
  done
}

# moto, empty: AWS's managed IAM policies loaded, as cargo lambda deploy needs them.
start_bare_moto() {
  echo "== starting moto (Secrets Manager, SQS, IAM, Lambda's control plane) on 127.0.0.1:${MOTO_PORT}"
  MOTO_IAM_LOAD_MANAGED_POLICIES=true setsid .venv/bin/moto_server -H 127.0.0.1 -p "$MOTO_PORT" \
    >"$WORK/moto.log" 2>&1 &
  pids+=($!)
  wait_for "http://127.0.0.1:${MOTO_PORT}/" moto 60
}

start_moto() {
  start_bare_moto
  echo "== creating the secret ${SECRET_ID}"
  .venv/bin/python - "$MOTO_PORT" "$SECRET_ID" "$ROUTING_KEY" "$TOKEN" "${SECRET_EXTRA:-{\}}" <<'PY'
import json, sys, boto3
port, name, key, token, extra = sys.argv[1:]
sm = boto3.client("secretsmanager", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
sm.create_secret(Name=name, SecretString=json.dumps({"routing_key": key, "webhook_token": token, **json.loads(extra)}))
PY
}

# The delivery queue and its dead-letter queue, as the template makes them; sets
# QUEUE_URL and DLQ_URL.
create_queues() {
  echo "== creating the SQS FIFO delivery queue and its dead-letter queue"
  read -r QUEUE_URL DLQ_URL < <(.venv/bin/python - "$MOTO_PORT" <<'PY'
import json, sys, boto3
sqs = boto3.client("sqs", endpoint_url=f"http://127.0.0.1:{sys.argv[1]}", region_name="us-east-1",
                   aws_access_key_id="testing", aws_secret_access_key="testing")
dlq = sqs.create_queue(QueueName="guance-pagerduty-dead-letter.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
url = sqs.create_queue(QueueName="guance-pagerduty-delivery.fifo", Attributes={
    "FifoQueue": "true", "MaximumMessageSize": "1048576", "VisibilityTimeout": "180",
    "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 1000})})["QueueUrl"]
print(url, dlq)
PY
)
}

start_standin() {
  echo "== starting the PagerDuty stand-in on 127.0.0.1:${STANDIN_PORT}"
  # The REST API token comes by the environment, not the command line (ps shows that).
  STANDIN_API_TOKEN="${PD_API_TOKEN:-}" setsid target/debug/examples/pagerduty-standin "$STANDIN_PORT" \
    >"$WORK/standin.log" 2>&1 &
  pids+=($!)
  wait_for "http://127.0.0.1:${STANDIN_PORT}/_received" standin 30
}

# Guance's OpenAPI stand-in, with the workspaces given as WORKSPACE_UUID=API_KEY.
start_guance() {
  echo "== starting the Guance OpenAPI stand-in on 127.0.0.1:${GUANCE_PORT}"
  setsid target/debug/examples/guance-standin "$GUANCE_PORT" "$@" >"$WORK/guance.log" 2>&1 &
  pids+=($!)
  wait_for "http://127.0.0.1:${GUANCE_PORT}/_restores" guance 30
}

show_restores() {
  echo
  echo "== what the Guance OpenAPI stand-in restored"
  curl -s "http://127.0.0.1:${GUANCE_PORT}/_restores" | .venv/bin/python -c '
import json, sys
restores = json.load(sys.stdin)
if not restores:
    print("(nothing)")
for r in restores:
    print("restored  workspace=%s monitorCheckerEventRef=%s" % (r["workspace_uuid"], r["monitor_checker_event_ref"]))
'
}

# The environment the function runs with, against the local stand-ins.
function_env() {
  cat <<EOF
PAGERDUTY_SECRET_ID=${SECRET_ID}
PAGERDUTY_EVENTS_URL=http://127.0.0.1:${STANDIN_PORT}/v2/enqueue
PAGERDUTY_API_URL=http://127.0.0.1:${STANDIN_PORT}
AWS_ENDPOINT_URL=http://127.0.0.1:${MOTO_PORT}
AWS_REGION=us-east-1
AWS_ACCESS_KEY_ID=testing
AWS_SECRET_ACCESS_KEY=testing
RUST_LOG=${RUST_LOG:-info}
EOF
  if [ -n "${QUEUE_URL:-}" ]; then
    cat <<EOF
DELIVERY_QUEUE_URL=${QUEUE_URL}
DEAD_LETTER_QUEUE_URL=${DLQ_URL}
QUEUE_RETRY_BASE_SECONDS=1
QUEUE_RETRY_MAX_SECONDS=4
EOF
  fi
}

show_received() {
  echo
  echo "== what the PagerDuty stand-in received (routing key masked)"
  curl -s "http://127.0.0.1:${STANDIN_PORT}/_received" | .venv/bin/python -c '
import json, sys
events = json.load(sys.stdin)
if not events:
    print("(nothing)")
for e in events:
    p = e.get("payload", {})
    action, key = e["event_action"], e["dedup_key"]
    severity, source, summary = p.get("severity"), p.get("source"), p.get("summary")
    print(f"{action:8} dedup_key={key} severity={severity} source={source} summary={summary}")
'
}
