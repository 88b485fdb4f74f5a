#!/usr/bin/env bash
# make invoke: the built bootstrap under AWS's Lambda Runtime Interface Emulator (the one
# `sam local invoke` runs inside its container, from the aws-sam-cli package), with moto
# as Secrets Manager and the PagerDuty stand-in: the Docker-free twin of
# `sam local invoke WebhookFunction -e events/...`. Each event is posted to the emulator's
# invocations endpoint; the function's answer and what the stand-in received are printed.
#
#   make invoke                         every file in events/
#   make invoke EVENT=events/alert.json one of them
#   RUST_LOG=trace make invoke          the function's log at TRACE (no secret in it)
set -euo pipefail
cd "$(dirname "$0")/.."

MOTO_PORT=${MOTO_PORT:-45671}
STANDIN_PORT=${STANDIN_PORT:-45672}
RIE_PORT=${RIE_PORT:-45673}
API_PORT=${API_PORT:-45674}
GUANCE_PORT=${GUANCE_PORT:-45675}
TOKEN=demo-webhook-token            # the token the files in events/ carry
ROUTING_KEY=demoR0utingKey0000000000000000ab
SECRET_ID=guance-pagerduty-invoke
# Two-way, as events/resolved-in-pagerduty.json needs it: signed with the demo's
# signing secret, naming the incident events/alert.json opens, whose Guance event is
# in the CONTRACT.md example's workspace.
PD_API_TOKEN=demo-pagerduty-rest-api-key
DEMO_WORKSPACE=wksp_968577392a1c4714a464cd2f6ee42a9c
DEMO_GUANCE_KEY=demoGuanceApiKey0123456789abcdef
SECRET_EXTRA=$(printf '{"pagerduty_webhook_secrets": ["demo-pagerduty-signing-secret"], "pagerduty_api_token": "%s", "guance_workspaces": {"%s": {"api_key": "%s", "openapi_url": "http://127.0.0.1:%s"}}}' \
  "$PD_API_TOKEN" "$DEMO_WORKSPACE" "$DEMO_GUANCE_KEY" "$GUANCE_PORT")
WORK=$(mktemp -d -t guance-pagerduty-invoke.XXXXXX)
EVENTS=${EVENT:-$(ls events/*.json)}
arch=$(uname -m); [ "$arch" = aarch64 ] && arch=arm64
RIE=$(ls .venv/lib/python*/site-packages/samcli/local/rapid/aws-lambda-rie-"$arch" 2>/dev/null | head -n1)
[ -x "$RIE" ] || { echo "aws-lambda-rie-$arch not found in .venv: run make tools" >&2; exit 1; }

source tools/local-stack.sh

echo "== building the function and the stand-ins (PagerDuty, Guance OpenAPI)"
cargo build --locked --bin bootstrap --example pagerduty-standin --example guance-standin
start_moto
start_standin
start_guance "${DEMO_WORKSPACE}=${DEMO_GUANCE_KEY}"

echo "== starting the Lambda Runtime Interface Emulator on 127.0.0.1:${RIE_PORT}"
function_env >"$WORK/function.env"
( set -a; source "$WORK/function.env"; set +a
  exec setsid env -u RUST_BACKTRACE "$RIE" --runtime-interface-emulator-address "127.0.0.1:${RIE_PORT}" \
    --runtime-api-address "127.0.0.1:${API_PORT}" target/debug/bootstrap ) >"$WORK/function.log" 2>&1 &
pids+=($!)
URL="http://127.0.0.1:${RIE_PORT}/2015-03-31/functions/function/invocations"
until curl -s -o /dev/null "http://127.0.0.1:${RIE_PORT}/"; do sleep 0.2; done

for event in $EVENTS; do
  echo
  echo "== $event"
  curl -s -XPOST "$URL" --data-binary @"$event" | .venv/bin/python -c '
import json, sys
answer = json.load(sys.stdin)
if "statusCode" in answer:
    print("HTTP", answer["statusCode"], answer.get("body"))
else:
    print("invocation error:", json.dumps(answer))
'
done

show_received
show_restores
echo
echo "== the function's log (${WORK}/function.log), last lines"
grep -h '^{' "$WORK/function.log" | tail -n 12 | cut -c1-400 || true
