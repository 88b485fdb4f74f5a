#!/usr/bin/env bash
# make setup-demo: make setup from nothing, all on loopback. moto plays AWS (the function
# is deployed to its Lambda control plane with cargo lambda, which runs nothing there), so
# the function itself runs under `cargo lambda watch`, reading the secret make setup
# writes; the PagerDuty stand-in has a service and its REST API, the Guance stand-in a
# workspace and an alert policy. make setup runs twice: from nothing to "test page opened
# and resolved", then again, changing nothing. A local tool, not part of the product.
set -euo pipefail
cd "$(dirname "$0")/.."

MOTO_PORT=${MOTO_PORT:-45681}
STANDIN_PORT=${STANDIN_PORT:-45682}
GUANCE_PORT=${GUANCE_PORT:-45683}
INVOKE_PORT=${INVOKE_PORT:-45684}
PD_API_TOKEN=setup-demo-pagerduty-rest-key
PD_READ_TOKEN=setup-demo-pagerduty-read-only-key
WORKSPACE=wksp_5e7a0000000000000000000000000001
GUANCE_KEY=setupDemoGuanceApiKey0123456789
SECRET_ID=guance-pagerduty   # what cargo lambda deploy gives the function (Cargo.toml)
WORK=$(mktemp -d -t guance-pagerduty-setup-demo.XXXXXX)
URL="http://127.0.0.1:${INVOKE_PORT}/lambda-url/bootstrap"

source tools/local-stack.sh

echo "== building the function and the stand-ins"
cargo build --locked --bin bootstrap --example pagerduty-standin --example guance-standin
start_bare_moto
echo "== starting the PagerDuty stand-in on 127.0.0.1:${STANDIN_PORT}, with a service"
STANDIN_API_TOKEN="$PD_API_TOKEN" setsid target/debug/examples/pagerduty-standin "$STANDIN_PORT" \
  --api-token "$PD_READ_TOKEN" --service payments >"$WORK/standin.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:${STANDIN_PORT}/_received" standin 30
SERVICE=$(grep -m1 -o 'service P[A-Z0-9]* payments' "$WORK/standin.log" | cut -d' ' -f2)
echo "   service ${SERVICE} (payments)"
GUANCE_PORT=$GUANCE_PORT start_guance "${WORKSPACE}=${GUANCE_KEY}" --alert-policy "${WORKSPACE}=on-call"

cat >"$WORK/function.env" <<ENV
PAGERDUTY_SECRET_ID=${SECRET_ID}
PAGERDUTY_EVENTS_URL=http://127.0.0.1:${STANDIN_PORT}/v2/enqueue
PAGERDUTY_API_URL=http://127.0.0.1:${STANDIN_PORT}
AWS_ENDPOINT_URL=http://127.0.0.1:${MOTO_PORT}
AWS_REGION=us-east-1
AWS_ACCESS_KEY_ID=testing
AWS_SECRET_ACCESS_KEY=testing
SECRET_CACHE_TTL_SECONDS=1
RUST_LOG=${RUST_LOG:-info}
ENV
echo "== starting the function under cargo lambda watch on 127.0.0.1:${INVOKE_PORT}"
setsid env -u RUST_LOG .venv/bin/cargo-lambda lambda watch --quiet --ignore-changes \
  -A 127.0.0.1 -P "$INVOKE_PORT" --env-file "$WORK/function.env" >"$WORK/watch.log" 2>&1 &
pids+=($!)
wait_for "$URL/" watch 600

setup() {
  env AWS_ENDPOINT_URL="http://127.0.0.1:${MOTO_PORT}" AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 \
    AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
    DEPLOYER=cargo-lambda LAMBDA_BINARY_PATH=target/debug/bootstrap FUNCTION_URL="$URL" \
    PAGERDUTY_API_URL="http://127.0.0.1:${STANDIN_PORT}" PAGERDUTY_API_TOKEN="$PD_API_TOKEN" \
    PAGERDUTY_READ_TOKEN="$PD_READ_TOKEN" PAGERDUTY_SERVICE_ID="$SERVICE" \
    GUANCE_API_KEY="$GUANCE_KEY" GUANCE_WORKSPACE_UUID="$WORKSPACE" \
    GUANCE_OPENAPI_URL="http://127.0.0.1:${GUANCE_PORT}" GUANCE_ALERT_POLICY=on-call \
    .venv/bin/python tools/setup.py "$@" 2>&1 | grep -v '^[▹✅🛠🔍🎭🔗]' || return 1
}
echo
echo "== make setup --dry-run: the plan"
setup --dry-run
echo
echo "== make setup: from nothing"
setup
echo
echo "== make setup again: nothing to change"
setup --no-test
