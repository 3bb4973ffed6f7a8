# guardstream worker image. The same image runs every guardstream process in
# docker-compose.yml (workers, the lag exporter, the one-shot init); the default command is
# a pipeline worker.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed uid/gid, so volume ownership is predictable across rebuilds and hosts.
RUN groupadd --system --gid 10001 guardstream \
 && useradd --system --uid 10001 --gid guardstream --home-dir /app --no-create-home \
    --shell /usr/sbin/nologin guardstream

WORKDIR /app
# Dependencies first, from pyproject alone, so code edits do not reinstall them. Every
# dependency ships manylinux wheels (librdkafka, RocksDB included): no compiler needed.
COPY pyproject.toml README.md ./
# (empty schemas/ and config/ too: the wheel's force-include needs them to exist)
RUN mkdir guardstream schemas config && touch guardstream/__init__.py \
 && pip install . && pip uninstall -y guardstream && rm -rf guardstream schemas config build

COPY guardstream ./guardstream
COPY schemas ./schemas
COPY config ./config
# A regular install: the wheel ships schemas/ and config/ as package data
# (guardstream/_data, see pyproject.toml), so nothing is read from /app at run time.
RUN pip install --no-deps . \
 && mkdir -p /var/lib/guardstream/state \
 && chown -R guardstream:guardstream /var/lib/guardstream

USER guardstream

# Listen on all interfaces inside the container; state and data on the volume.
ENV GUARDSTREAM_HOST=0.0.0.0 \
    GUARDSTREAM_DATA_DIR=/var/lib/guardstream \
    GUARDSTREAM_WORKER_STATE_DIR=/var/lib/guardstream/state \
    GUARDSTREAM_WORKER_WEB_PORT=6066

EXPOSE 6066
VOLUME ["/var/lib/guardstream"]

# Liveness only: a worker that is rebalancing or recovering tables is alive but not ready,
# and must not be restarted for it (that would restart the recovery). python:slim has no
# curl, so the probe is Python's own HTTP client.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('GUARDSTREAM_WORKER_WEB_PORT', '6066') + '/health/live', timeout=4)"]

ENTRYPOINT ["guardstream"]
CMD ["worker"]
