# featurelens: every set-up step a fresh machine needs lives here.
#   make demo   the whole pipeline on a real corpus (embedded mode)
#   make eval   the paper's findings measured on the demo's stack (after make demo)
#   make test   lint, type checks and the test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROJECTS := gen/python libs/core libs/kit $(patsubst %/pyproject.toml,%,$(wildcard services/*/pyproject.toml)) clients/python
PYPROJECTS := $(addsuffix /pyproject.toml,$(PROJECTS))
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install test lint typecheck pytest protos protos-check demo eval bench clean

install: $(STAMP)

# torch is installed first and alone: pip then takes the local CPU build instead of CUDA wheels.
$(STAMP): $(PYPROJECTS) requirements/constraints.txt requirements/dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c requirements/constraints.txt hatchling editables
	$(PY) -m pip install -q --no-build-isolation -c requirements/constraints.txt \
		-r requirements/dev.txt $(addprefix -e ,$(PROJECTS))
	touch $(STAMP)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/buf lint protos
	$(VENV)/bin/lint-imports

typecheck: install
	$(VENV)/bin/mypy

pytest: install
	scripts/ensure_redis.sh
	scripts/ensure_chromium.sh
	$(PY) -m pytest -q

test: lint typecheck pytest

protos: install
	$(PY) scripts/generate_protos.py

demo: install
	$(PY) scripts/demo.py $(DEMO_ARGS)

# `featurelens eval all --quick` on the demo's embedded stack and MiniLM store (run `make demo` first).
eval: install
	$(PY) scripts/eval.py $(EVAL_ARGS)

bench: install
	scripts/ensure_redis.sh
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
