# syntax=docker/dockerfile:1
# The cachecore sidecar, cachecore-server, as a container image.
#
#   docker build -t cachecore-server .
#   docker run --rm --network host -e CACHECORE_TOKEN=change-me \
#       -e AWS_REGION=eu-west-1 -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY \
#       cachecore-server
#
# Settings are the server's environment variables (README, "Settings"); prefer
# them to options such as --port, since the HEALTHCHECK reads CACHECORE_PORT.
#
# Two stages: "build" makes wheels of the library, the server and their
# dependencies; the final stage installs those wheels alone into /opt/cachecore,
# a virtual environment without pip. Both steps are packaging/install.sh, which
# tests/test_container.py runs too. The final stage copies no wheel and no source:
# they are mounted for the one RUN that installs them (BuildKit, the default
# builder since Docker 23).
#
# The base is pinned by tag: Python 3.12 on Debian bookworm, moving with patch
# releases. Pin a digest for a reproducible build:
#   docker build --build-arg PYTHON_IMAGE=python:3.12-slim-bookworm@sha256:... .
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHON=python
WORKDIR /src
COPY packaging/ packaging/
COPY packages/cachecore/ packages/cachecore/
COPY packages/server-falcon/ packages/server-falcon/
RUN packaging/install.sh wheels /src /wheels

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="cachecore-server" \
      org.opencontainers.image.description="A local cache for AWS Secrets Manager secrets, served over HTTP on loopback" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 cachecore \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin cachecore
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    --mount=type=bind,from=build,source=/src/packaging,target=/packaging \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHON=python \
    /packaging/install.sh venv /wheels /opt/cachecore
COPY --from=build /src/packaging/healthcheck.py /opt/cachecore/healthcheck.py

# CACHECORE_HOST stays at its default, 127.0.0.1. In an ECS task with awsvpc
# networking, and in a Kubernetes pod, the containers share one network
# namespace: the application reaches the sidecar on 127.0.0.1 and nothing
# outside the task or pod can. To serve other hosts, set CACHECORE_HOST.
# TMPDIR: under --server gunicorn, gunicorn keeps its worker's heartbeat file
# there (the default server, waitress, writes no file); /dev/shm is a tmpfs that
# stays writable under a read-only root file system (/tmp is the fallback).
ENV PATH=/opt/cachecore/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/dev/shm

USER 10001:10001
EXPOSE 8015
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "/opt/cachecore/healthcheck.py"]
ENTRYPOINT ["cachecore-server"]
