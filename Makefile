# microthreads: the two commands a new user needs are `make run` and `make test`.
# Each makes .venv on first use and installs the project into it (editable);
# the stamp files make a second run install nothing.
#
# PYTHON picks the interpreter: `make test PYTHON=python3.13` (or 3.13, or a
# path) builds and uses .venv-3.13, found on PATH or in $(pyenv root)/versions;
# the default python3 keeps .venv. scripts/find-python does the looking.

PYTHON ?= python3
ifeq ($(PYTHON),python3)
VENV   := .venv
BASE_PYTHON := $(PYTHON)
else
FOUND  := $(shell scripts/find-python '$(PYTHON)')
ifeq ($(FOUND),)
$(error PYTHON=$(PYTHON): no such interpreter on PATH or in pyenv)
endif
VENV   := .venv-$(word 1,$(FOUND))
BASE_PYTHON := $(word 2,$(FOUND))
endif
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
# Exact versions for the tools whose output is compared run to run (lint, docs, bench).
PINNED := -c constraints.txt
HOST   ?= 127.0.0.1
PORT   ?= 1980
WEB_PORT ?= 8080
ARGS   ?=
# Debian packages the end-to-end tests drive (they skip with a reason without them);
# chromium opens the built API reference (tests/test_docs.py); with chromium-driver,
# Selenium drives the chat page (tests/test_chat_browser.py); the database and
# SSH servers are the real servers of tests/test_drivers.py (started by the tests).
SYSTEM_PACKAGES := telnet netcat-openbsd tmux redis-server openssl ncat chromium chromium-driver \
	wrk curl mariadb-server postgresql openssh-server
# The tests of the runtime and microthreads.net alone, without the chat service:
# what CI runs on the oldest and newest supported Pythons (make test-core).
CORE_TESTS := tests --ignore-glob='tests/test_chat_*' --ignore=tests/test_faults.py \
	--ignore=tests/test_federation.py --ignore=tests/test_federation_tls.py \
	--ignore=tests/test_security.py \
	--ignore=tests/test_soak.py --ignore=tests/test_docs.py

.PHONY: run run-cluster test test-core test-stdlib lint docs bench bench-crowd soak autobahn clean system-deps

$(PY):
	$(BASE_PYTHON) -m venv $(VENV)

$(VENV)/.installed-run: setup.cfg pyproject.toml | $(PY)
	$(PIP) install -e '.[websocket,http]'
	touch $@

$(VENV)/.installed-test: setup.cfg pyproject.toml constraints.txt | $(PY)
	$(PIP) install $(PINNED) -e '.[test]'
	touch $@ $(VENV)/.installed-run

$(VENV)/.installed-bench: setup.cfg pyproject.toml constraints.txt | $(PY)
	$(PIP) install $(PINNED) -e '.[test,bench]'
	touch $@ $(VENV)/.installed-test $(VENV)/.installed-run

$(VENV)/.installed-lint: setup.cfg pyproject.toml constraints.txt | $(PY)
	$(PIP) install $(PINNED) -e '.[test,lint]'
	touch $@ $(VENV)/.installed-test $(VENV)/.installed-run

$(VENV)/.installed-docs: setup.cfg pyproject.toml constraints.txt | $(PY)
	$(PIP) install $(PINNED) -e '.[docs]'
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run  ## the chat server on 127.0.0.1:1980 (telnet or nc to it), its page on :8080
	@echo "chat: telnet $(HOST) $(PORT), or a browser at http://$(HOST):$(WEB_PORT)/"
	$(PY) -m chat --host $(HOST) --port $(PORT) --web-port $(WEB_PORT) $(ARGS)

# A local Redis (loopback, port 6390, no persistence, its log in build/redis-6390.log)
# and a 2-worker chat on it; Ctrl-C stops both (the chat exits 0; make itself may
# still report the Ctrl-C as "Interrupt"). Needs redis-server (make system-deps) and
# installs only the redis extra (CLUSTER=1 also the test extra: tests/redis_helpers.py).
# CLUSTER=1: a local Redis Cluster instead (3 masters + 3 replicas on free ports,
# nodes.conf in a temporary directory; tests/redis_helpers.py), stopped with the chat.
$(VENV)/.installed-cluster: setup.cfg pyproject.toml | $(PY)
	$(PIP) install -e '.[websocket,http,redis]'
	touch $@ $(VENV)/.installed-run

run-cluster: $(if $(CLUSTER),$(VENV)/.installed-test,$(VENV)/.installed-cluster)  ## 2 chat workers federated through a local Redis (CLUSTER=1: a Redis Cluster)
	@command -v redis-server >/dev/null || { echo "no redis-server: run make system-deps"; exit 1; }
	@if [ -n "$(CLUSTER)" ]; then \
	  $(PY) tests/redis_helpers.py --workers 2 --host $(HOST) --port $(PORT) $(ARGS); \
	else \
	  mkdir -p build; \
	  redis-server --port 6390 --save '' --appendonly no --bind 127.0.0.1 \
	    --logfile $(CURDIR)/build/redis-6390.log & redis=$$!; \
	  trap 'kill $$redis 2>/dev/null' EXIT; trap 'exit 0' INT TERM; \
	  echo "Redis on 127.0.0.1:6390, its log in build/redis-6390.log"; \
	  echo "chat: telnet $(HOST) $(PORT), or a browser at http://$(HOST):$(WEB_PORT)/ (2 workers)"; \
	  $(PY) -m chat --workers 2 --redis redis://127.0.0.1:6390/0 --host $(HOST) --port $(PORT) \
	    --web-port $(WEB_PORT) $(ARGS) \
	    || [ $$? -eq 130 ]; \
	fi

test: $(VENV)/.installed-test  ## the whole test suite
	$(PY) -m pytest $(ARGS)

test-core: $(VENV)/.installed-test  ## the runtime and net tests only (CI's extra Pythons)
	$(PY) -m pytest $(CORE_TESTS) $(ARGS)

# CPython's own tests of socket, ssl, select, subprocess, threading, queue, ... after
# monkey.patch_all(), one process per module (tests/stdlib_patched.py); every test passes
# but those of tests/stdlib_known_failures.txt. Skips where the interpreter has no `test`
# package. 2-3 minutes on 2 cores; ARGS="test_ssl" for one module (or test_ssl.SomeTests),
# ARGS=--unpatched for the baseline of the same tests without patching.
test-stdlib: $(VENV)/.installed-run  ## CPython's own tests of the patched modules, patched
	$(PY) tests/stdlib_patched.py $(ARGS)

lint: $(VENV)/.installed-lint  ## ruff, and mypy (strict on microthreads/ and chat/, see mypy.ini)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# The API reference from the docstrings: build/docs/html/index.html. Warnings
# (a broken cross-reference included: -n) fail the build; -E rereads every
# source, so a second run reports them again.
docs: $(VENV)/.installed-docs  ## the API reference, from the docstrings
	$(PY) -m sphinx -b html -E -W -n --keep-going -q docs build/docs/html
	@echo "documentation: build/docs/html/index.html"

bench: $(VENV)/.installed-bench  ## every scenario against every peer (10-20 minutes; bench/README.md)
	$(PY) -m bench $(ARGS)

# 10,000 members logging in: minutes per run and row, so not part of make bench
bench-crowd: $(VENV)/.installed-bench  ## the 10,000-member crowd (make bench-crowd ARGS="--runs 3")
	$(PY) -m bench --only crowd10000 --runs 1 $(ARGS)

soak: $(VENV)/.installed-test  ## the chat server soaked for 2 minutes; longer: make soak ARGS="--seconds 3600"
	$(PY) tests/soak.py $(ARGS)

# Installs the Debian packages that the telnet/nc/tmux/redis tests use, where missing.
# The Autobahn|Testsuite's fuzzing client against a microthreads.websocket echo server:
# autobahntestsuite is Python 2.7 only, so tools/autobahn.py makes a 2.7 virtualenv for it
# in build/autobahn/ (a Python 2.7 on PATH or in pyenv; PyPI) on first use.
# ARGS="--cases all" runs every case (the default: wsproto's fast set; ~minutes).
autobahn: $(VENV)/.installed-test  ## WebSocket conformance (Autobahn|Testsuite), report in build/autobahn/
	$(PY) tools/autobahn.py $(ARGS)

system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else echo "system packages present: $(SYSTEM_PACKAGES)"; fi

clean:
	rm -rf .venv .venv-* build dist *.egg-info .pytest_cache .ruff_cache bench/build
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
