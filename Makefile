# guance-pagerduty: every target installs what it needs, idempotently.
SHELL := /bin/bash
.DEFAULT_GOAL := test
CARGO ?= cargo
PYTHON ?= python3
VENV := .venv
# A stamp per requirements file: editing the pins reinstalls, nothing else does.
TOOLS_STAMP := $(VENV)/.installed-$(shell sha256sum tools/requirements.txt | cut -c1-16)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export SAM_CLI_TELEMETRY := 0
# The Lambda runs on arm64; sam build and the size benchmark cross-compile to it.
ARM_TARGET := aarch64-unknown-linux-gnu

.PHONY: test fmt lint tools demo invoke cargo-lambda-secret deploy-check soak-queue template-check targets webhook-url pagerduty-webhook guance-workspace setup setup-demo bench soak fuzz

## tools: the Python venv with moto, SAM CLI, cfn-lint, cargo-lambda and zig (idempotent)
tools: $(TOOLS_STAMP)

$(TOOLS_STAMP): tools/requirements.txt
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --upgrade pip
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tools/requirements.txt
	touch $@

## targets: the Rust standard library for arm64 (idempotent)
targets:
	@rustup target list --installed | grep -qx $(ARM_TARGET) || rustup target add $(ARM_TARGET)

## test: every test (unit, translation tables, integration against moto and the PagerDuty stand-in, the template)
test: tools
	$(CARGO) test --locked --all-targets
	$(MAKE) --no-print-directory template-check
	$(MAKE) --no-print-directory deploy-check

## template-check: sam validate --lint, cfn-lint, sam build (arm64) and the offline-transformed template's checks, alarms and dashboard against the metrics the code emits
template-check: tools targets
	sam validate --lint
	cfn-lint template.yaml
	sam build
	METRICS_CATALOG=$(CURDIR)/target/metrics-catalog.json $(CARGO) test --locked --quiet --test metrics
	METRICS_CATALOG=$(CURDIR)/target/metrics-catalog.json \
	  $(VENV)/bin/python tests/check_template.py .aws-sam/build/WebhookFunction-Shared/bootstrap

## deploy-check: the README's cargo lambda deploy commands against moto (IAM, Lambda, Secrets Manager), and what they made
deploy-check: tools targets
	$(VENV)/bin/python tests/check_cargo_lambda_deploy.py

## webhook-url: the URL to paste into Guance, from the deployed stack (needs AWS credentials; STACK_NAME, ROUTE optional)
webhook-url: tools
	@$(VENV)/bin/python tools/webhook_url.py

## setup: from nothing to a working page: PagerDuty's integration, the deployment (DEPLOYER=sam|cargo-lambda), the secret, two-way's webhook, Guance's notification object and alert policy, then a test page and its recovery; SETUP_ARGS="--dry-run" or "--no-test"; make setup SETUP_ARGS=--help for every variable
setup: tools
	@$(VENV)/bin/python tools/setup.py

## setup-demo: make setup from nothing against moto and the stand-ins, the function under cargo lambda watch: the plan, the run (a test page opened and resolved), a second run changing nothing
setup-demo: tools
	bash tools/setup-demo.sh

## guance-workspace: adds or replaces one Guance workspace (GUANCE_WORKSPACE_UUID, GUANCE_API_KEY, GUANCE_SITE or GUANCE_OPENAPI_URL) in the secret's guance_workspaces, keeping everything else; SECRET_ID or STACK_NAME
guance-workspace: tools
	@$(VENV)/bin/python tools/guance_workspace.py

## cargo-lambda-secret: after `cargo lambda deploy`, the secret (ROUTING_KEY, generated token) and the role's permission to read it; prints the webhook URL
cargo-lambda-secret: tools
	@$(VENV)/bin/python tools/cargo_lambda_secret.py

## pagerduty-webhook: two-way: the PagerDuty v3 webhook subscription (incident.resolved) to the function URL, its signing secret stored in the function's secret (PAGERDUTY_API_TOKEN; PAGERDUTY_SERVICE_IDS, PAGERDUTY_READ_TOKEN, FUNCTION_URL, SECRET_ID optional)
pagerduty-webhook: tools
	@$(VENV)/bin/python tools/pagerduty_webhook.py

## fmt: format the code
fmt:
	$(CARGO) fmt

## lint: formatting check, clippy with warnings as errors, cargo deny (licenses, bans, sources)
lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	@command -v cargo-deny >/dev/null || $(CARGO) install --locked cargo-deny
	$(CARGO) deny check licenses bans sources

## demo: the function under cargo lambda watch, moto and the PagerDuty stand-in; an alert and its recovery sent through the function URL
demo: tools
	bash tools/demo.sh

## invoke: the built bootstrap under AWS's Lambda Runtime Interface Emulator (sam local's, without Docker) with moto and the stand-in; EVENT=events/alert.json for one file, default all of events/
invoke: tools
	bash tools/invoke.sh

## bench: criterion benches of the core, then the release bootstrap end to end beside the guide's approach; writes BENCHMARKS.md
bench: tools targets
	$(CARGO) bench --locked --bench translate
	$(CARGO) build --locked --release --bin bootstrap --example bench-e2e
	cargo-lambda lambda build --release --arm64 --bin bootstrap
	target/release/examples/bench-e2e --bootstrap target/release/bootstrap \
	  --arm64 target/lambda/bootstrap/bootstrap --invocations 2000 --out BENCHMARKS.md
	$(CARGO) run --locked --release --quiet --example bench-two-way -- --deliveries 500 >> BENCHMARKS.md

## soak: 10,000 events through the real handler while the stand-in fails a third of the attempts; prints the table
soak:
	$(CARGO) run --locked --release --example soak -- --events 10000 --workers 8

## soak-queue: queue mode: events over 8 routes through the webhook into moto's SQS FIFO, PagerDuty down for a while and failing a third of the attempts, drained by the real dispatcher killed mid-batch 3 times; prints delivered, at risk, lost, out of order, duplicated
soak-queue: tools
	$(CARGO) run --locked --release --example soak-queue -- --events $(SOAK_EVENTS) --routes 8

SOAK_EVENTS ?= 10000
FUZZ_SECONDS ?= 300
## fuzz: builds the cargo-fuzz targets, runs each for FUZZ_SECONDS (default 300) from a corpus seeded from events/; prints executions and crashes, and fails on a build failure or a crash
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install --locked cargo-fuzz
	bash tools/fuzz.sh $(FUZZ_SECONDS)
