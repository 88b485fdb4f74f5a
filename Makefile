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

.PHONY: test fmt lint tools demo template-check targets webhook-url

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

## template-check: sam validate --lint, cfn-lint, sam build (arm64) and the offline-transformed template's checks
template-check: tools targets
	sam validate --lint
	cfn-lint template.yaml
	sam build
	$(VENV)/bin/python tests/check_template.py .aws-sam/build/WebhookFunction/bootstrap

## webhook-url: the URL to paste into Guance, from the deployed stack (needs AWS credentials; STACK_NAME, ROUTE optional)
webhook-url: tools
	@$(VENV)/bin/python tools/webhook_url.py

## fmt: format the code
fmt:
	$(CARGO) fmt

## lint: formatting check and clippy with warnings as errors
lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

## demo: the function under cargo lambda watch, moto and the PagerDuty stand-in; an alert and its recovery sent through the function URL
demo: tools
	bash tools/demo.sh
