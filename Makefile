# Two entry points (see README): `make run` and `make test`. Both set up what they need, idempotently.
SHELL := /bin/bash
PYTHON ?= /usr/bin/python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Debian 12 / Raspberry Pi OS Bookworm packages the appliance and its tests use.
APT_PACKAGES := python3 python3-venv python3-dev gcc libsane-dev libsane1 sane-utils \
	tesseract-ocr tesseract-ocr-vie tesseract-ocr-osd poppler-utils qpdf ghostscript \
	fonts-liberation2 fonts-dejavu-core tzdata \
	softhsm2 opensc libnss3-tools mosquitto
# Only for the tests (the browser) and the benchmark's anchor.
TEST_APT_PACKAGES := chromium debootstrap
BENCH_APT_PACKAGES := ocrmypdf

.PHONY: run test bench setup apt apt-test apt-install venv lint typecheck clean-venv

setup: apt venv

apt:
	@$(MAKE) --no-print-directory apt-install PACKAGES="$(APT_PACKAGES)"

apt-test:
	@$(MAKE) --no-print-directory apt-install PACKAGES="$(APT_PACKAGES) $(TEST_APT_PACKAGES)"

apt-install:
	@missing=$$(for p in $(PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing apt packages: $$missing"; \
		$(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

# --system-site-packages so that picamera2 from apt (Raspberry Pi OS) is importable; our own
# dependencies are pinned in pyproject.toml and installed into the venv, shadowing apt copies.
venv: $(STAMP)
$(STAMP): pyproject.toml
	@[ -x $(PY) ] || $(PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=25.1"
	$(PY) -m pip install -q -e . --group dev
	@touch $(STAMP)

# Sets up, prepares the database and a development scanner (the SANE test backend when no real
# scanner is attached), then digitizes a sample Vietnamese page and one scanned page.
run: setup
	@bash scripts/run-dev.sh

# Sets up and runs every test suite (slow ones included); the report is also kept in var/test-run.log.
test: apt-test venv
	@bash scripts/run-tests.sh

bench: setup
	@missing=$$(for p in $(BENCH_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	[ -z "$$missing" ] || { $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; }
	$(PY) -m bench.run

lint: setup
	$(VENV)/bin/ruff format --check appliance tests bench
	$(VENV)/bin/ruff check appliance tests bench

typecheck: setup
	$(VENV)/bin/mypy

clean-venv:
	rm -rf $(VENV)
