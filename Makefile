# The commands the README names. Everything installs itself on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMPS := .stamps
DEBIAN_PACKAGES := dcmtk orthanc dicom3tools libgdcm-tools chromium libfaketime pixelmed-apps openjdk-17-jdk-headless prometheus

.PHONY: run test lint bench acceptance install peers clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first, pinned, so pip takes the local CPU wheel rather than a multi-GB CUDA build.
$(STAMPS)/install: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[dev]"
	@mkdir -p $(STAMPS) && touch $@

install: $(STAMPS)/install

# The real peers the integration tests and benchmarks talk to: DCMTK, Orthanc, dciodvfy, PixelMed's
# DicomSRValidator (the SR templates; a JDK runs testkit/ValidateMany.java, many files in one JVM),
# Prometheus's promtool (the alerting rules), and Chromium for the worklist page (Playwright drives
# it; it never downloads a browser of its own).
$(STAMPS)/peers:
	@if ! command -v storescu >/dev/null || ! command -v Orthanc >/dev/null || ! command -v dciodvfy >/dev/null || ! command -v gdcmconv >/dev/null || ! command -v chromium >/dev/null || ! command -v DicomSRValidator >/dev/null || ! command -v javac >/dev/null || ! command -v promtool >/dev/null || [ ! -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEBIAN_PACKAGES) >/dev/null; \
	fi
	@mkdir -p $(STAMPS) && touch $@

peers: $(STAMPS)/peers

run: install
	TRIAGE_ALLOWED_CALLING_AES="$${TRIAGE_ALLOWED_CALLING_AES:-TRIAGESCU,STORESCU}" $(BIN)/triage serve

test: install peers
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The fault-injection scenarios against the real service, each followed by the five invariants; one
# table at the end. `make test` runs the short ones.
acceptance: install peers
	$(BIN)/pytest -q -m acceptance tests/acceptance

bench: install peers
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.inference
	$(BIN)/python -m bench.delivery
	$(BIN)/python -m bench.worklist

clean:
	rm -rf $(VENV) $(STAMPS) var
