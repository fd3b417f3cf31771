# syntax=docker/dockerfile:1
# The dispatcher image, one for everything: the services (`dispatcher serve
# jobs|nodes|admin`), the migrations (`dispatcher migrate`), the agent
# (`muster-agent`) and the tools (`muster-console`, `muster-notificator`, ...).
#   docker build -t muster-dispatcher:0.1.0 .
# Kubernetes manifests: deploy/k8s (docs/kubernetes.md). CI builds it without a
# Docker daemon: tests/deploy/test_image.py runs this file's COPY and RUN steps.

# The base, pinned by digest: two builds get the same system. To move to a newer
# patch release, read the current digest of the tag and replace it here:
#   docker buildx imagetools inspect python:3.11-slim --format '{{json .Manifest.Digest}}'
# (or `crane digest python:3.11-slim`); one build can override it with
#   docker build --build-arg PYTHON_IMAGE=python:3.11-slim@sha256:<digest> .
ARG PYTHON_IMAGE=python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

# --- builder: the wheel, and a virtual environment with it and its dependencies
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Every file the three wheels are built from (docs/install.md): the client
# (packaging/client: the facade, the stubs, `muster`), the render node
# (packaging/render-node: the agent and its systemd unit) and the server
# (pyproject.toml). Each wheel's hook table names its packages (tools/distributions.py);
# tests/deploy/test_image.py checks that every one of them is copied here.
COPY pyproject.toml README.md LICENSE .gitignore ./
COPY packaging/ packaging/
COPY protos/ protos/
COPY tools/ tools/
COPY deploy/systemd/ deploy/systemd/
COPY muster_gateway/ muster_gateway/
COPY muster_cli/ muster_cli/
COPY muster_agent/ muster_agent/
COPY muster_services/ muster_services/
COPY muster_notificator/ muster_notificator/
COPY muster_console/ muster_console/
# The web dashboard (`muster-web`, deploy/k8s/web.yaml) with its page and assets.
COPY muster_web/ muster_web/
# `pip wheel` runs each build hook (tools/hatch_build.py; the client's generates
# the stubs with the grpcio-tools of its build requirements) in an isolated
# environment that is thrown away; the virtual environment gets the three wheels
# and their runtime dependencies only: no pip, no build tools, no dev extra, no
# embedded PostgreSQL.
RUN python -m pip wheel --no-deps --wheel-dir /wheels ./packaging/client ./packaging/render-node . \
    && python -m venv --without-pip /opt/muster \
    && python -m pip --python /opt/muster/bin/python install /wheels/*.whl

# --- runtime
FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/muster/bin:$PATH
RUN groupadd --system --gid 10001 muster \
    && useradd --system --uid 10001 --gid muster --home-dir /home/muster --create-home muster
COPY --from=builder /opt/muster /opt/muster
# Every command of the image starts and the services import.
RUN python -c "import muster_services.cli, muster_proto.jobs.v1.jobs_pb2, MDispatcherAPI" \
    && for script in /opt/muster/bin/dispatcher /opt/muster/bin/muster*; do \
           "$script" --help > /dev/null || exit 1; \
       done

USER 10001:10001
WORKDIR /home/muster
# Listen on every interface in a container; local state (unused with an external
# database) in the home folder. Kubernetes sets its own values (deploy/k8s).
ENV MUSTER_LISTEN=0.0.0.0:50051 \
    MUSTER_DATA_DIR=/home/muster/data
# 50051 gRPC (MUSTER_LISTEN), 8081 health (MUSTER_HEALTH_LISTEN in deploy/k8s),
# 9464 Prometheus metrics (MUSTER_METRICS_LISTEN), 8080 web dashboard
# (`muster-web`, MUSTER_WEB_LISTEN). tests/deploy/test_image.py checks that every
# containerPort of deploy/k8s is here.
EXPOSE 50051 8081 9464 8080
ENTRYPOINT ["dispatcher"]
CMD ["serve", "jobs", "nodes", "admin"]
