# syntax=docker/dockerfile:1
# ripple in a container (docs/operations.md, "Container"):
#   docker build -t ripple .
#   docker run -d --name ripple -p 8000:8000 -v ripple-data:/data ripple
# The database lives on the /data volume: use a named volume or a local disk, never a network filesystem (NFS, SMB,
# most cloud file shares) - SQLite's locking and WAL need a local filesystem. Lint: hadolint Dockerfile (.ci/run).
ARG PYTHON_VERSION=3.12

FROM python:${PYTHON_VERSION}-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY ripple ./ripple
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:${PYTHON_VERSION}-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    RIPPLE_DB=/data/ripple.db \
    RIPPLE_HOST=0.0.0.0 \
    RIPPLE_AUTH=true \
    RIPPLE_PORT=8000 \
    RIPPLE_LOG_FORMAT=json
# A fixed non-root user, so a volume's owner is predictable (chown 10001 a folder you mount).
RUN groupadd --system --gid 10001 ripple \
    && useradd --system --uid 10001 --gid ripple --home-dir /data --no-create-home --shell /usr/sbin/nologin ripple \
    && mkdir /data \
    && chown ripple:ripple /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels /wheels/ripple-*.whl \
    && rm -rf /wheels
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000
# Healthy while the server answers /v1/health (also when it says "degraded": that is for people and alerts to read,
# not a reason to restart). It connects to the container's own loopback with Host: localhost.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen(u.Request('http://127.0.0.1:' + os.environ.get('RIPPLE_PORT', '8000') + '/v1/health', headers={'Host': 'localhost'}), timeout=4)"]
# SIGTERM (docker stop) drains writes and subscribers before exiting; give it time: docker stop -t 30.
STOPSIGNAL SIGTERM
ENTRYPOINT ["ripple", "serve"]
