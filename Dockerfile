# syntax=docker/dockerfile:1
# The dispatcher image: every service (`dispatcher serve jobs|nodes|admin`), the
# migrations (`dispatcher migrate`) and the agent (`muster-agent`).
#   docker build -t muster-dispatcher:0.1.0 .
# Kubernetes manifests: deploy/k8s (docs/kubernetes.md).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# `pip install .` builds the wheel: its build hook (tools/hatch_build.py) runs
# tools/gen_protos.py with the build requirements of pyproject.toml and packs the
# generated modules (gen/farm) as the top-level package `farm`.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY protos/ protos/
COPY tools/ tools/
COPY services/ services/
COPY gateway/ gateway/
COPY notificator/ notificator/
COPY agent/ agent/
COPY console/ console/
COPY muster_cli/ muster_cli/
# The web dashboard (`muster-web`, deploy/k8s/web.yaml) with its page and assets.
COPY muster_web/ muster_web/
RUN pip install . \
    && python -c "import farm.jobs.v1.jobs_pb2, services.cli, MDispatcherAPI, muster_cli.main, muster_web.server" \
    && rm -rf /src

RUN groupadd --system --gid 10001 muster \
    && useradd --system --uid 10001 --gid muster --home-dir /home/muster --create-home muster
USER 10001:10001
WORKDIR /home/muster

# Listen on every interface in a container; local state (unused with an external
# database) in the home folder. Kubernetes sets its own values (deploy/k8s).
ENV MUSTER_LISTEN=0.0.0.0:50051 \
    MUSTER_DATA_DIR=/home/muster/data
EXPOSE 50051
ENTRYPOINT ["dispatcher"]
CMD ["serve", "jobs", "nodes", "admin"]
