# `make test` and `make serve` set everything up themselves on a fresh machine.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8080
DATA   ?= ./haven-data

.PHONY: test serve lint bench clean system

# System packages the hub and its tests drive: git with LFS, and a PostgreSQL server
# (the tests start their own on 127.0.0.1 to prove the hub runs on it).
system:
	@command -v git >/dev/null && command -v git-lfs >/dev/null || \
	  (apt-get update -q && apt-get install -y -q git git-lfs)
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  (apt-get update -q && apt-get install -y -q postgresql)
	@git lfs install --skip-repo >/dev/null

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory system
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

test: $(STAMP)
	$(PY) -m pytest -q

serve: $(STAMP)
	$(VENV)/bin/haven serve --host $(HOST) --port $(PORT) --data $(DATA)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/encoders.py
	$(PY) benchmarks/generate.py
	$(PY) benchmarks/hub.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
