# guance-pagerduty: every target installs what it needs, idempotently.
SHELL := /bin/bash
.DEFAULT_GOAL := test
CARGO ?= cargo
PYTHON ?= python3
VENV := .venv
# A stamp per requirements file: editing the pins reinstalls, nothing else does.
TOOLS_STAMP := $(VENV)/.installed-$(shell sha256sum tools/requirements.txt | cut -c1-16)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: test fmt lint tools demo

## tools: the Python venv with moto, SAM CLI, cfn-lint, cargo-lambda and zig (idempotent)
tools: $(TOOLS_STAMP)

$(TOOLS_STAMP): tools/requirements.txt
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --upgrade pip
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tools/requirements.txt
	touch $@

## test: every test (unit, translation tables, integration against moto and the PagerDuty stand-in)
test: tools
	$(CARGO) test --locked --all-targets

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
