# microthreads: the two commands a new user needs are `make run` and `make test`.
# Each makes .venv on first use and installs the project into it (editable);
# the stamp files make a second run install nothing.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
HOST   ?= 127.0.0.1
PORT   ?= 1980
ARGS   ?=
# Debian packages the end-to-end tests drive (they skip with a reason without them).
SYSTEM_PACKAGES := telnet netcat-openbsd tmux redis-server openssl ncat

.PHONY: run run-cluster test lint bench soak clean system-deps

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-run: setup.cfg pyproject.toml | $(PY)
	$(PIP) install -e .
	touch $@

$(VENV)/.installed-test: setup.cfg pyproject.toml | $(PY)
	$(PIP) install -e '.[test]'
	touch $@ $(VENV)/.installed-run

$(VENV)/.installed-bench: setup.cfg pyproject.toml | $(PY)
	$(PIP) install -e '.[test,bench]'
	touch $@ $(VENV)/.installed-test $(VENV)/.installed-run

run: $(VENV)/.installed-run  ## the chat server on 127.0.0.1:1980 (telnet or nc to it)
	$(PY) -m chat --host $(HOST) --port $(PORT) $(ARGS)

# A local Redis (loopback, port 6390, no persistence) and a 2-worker chat on it;
# Ctrl-C stops both. Needs redis-server (make system-deps).
run-cluster: $(VENV)/.installed-test  ## 2 chat workers federated through a local Redis
	@command -v redis-server >/dev/null || { echo "no redis-server: run make system-deps"; exit 1; }
	redis-server --port 6390 --save '' --appendonly no --bind 127.0.0.1 & redis=$$!; \
	trap 'kill $$redis 2>/dev/null' EXIT; \
	$(PY) -m chat --workers 2 --redis redis://127.0.0.1:6390/0 --host $(HOST) --port $(PORT) $(ARGS)

test: $(VENV)/.installed-test  ## the whole test suite
	$(PY) -m pytest $(ARGS)

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .

bench: $(VENV)/.installed-bench
	$(PY) -m bench $(ARGS)

soak: $(VENV)/.installed-test  ## the chat server soaked for 2 minutes; longer: make soak ARGS="--seconds 3600"
	$(PY) tests/soak.py $(ARGS)

# Installs the Debian packages that the telnet/nc/tmux/redis tests use, where missing.
system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else echo "system packages present: $(SYSTEM_PACKAGES)"; fi

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache bench/build
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
