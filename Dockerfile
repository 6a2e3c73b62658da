# One image for every service in docker-compose.yml (worker, beat, Flower, the exporter):
# the project's wheel and its pinned dependencies in a venv, run as a non-root user who cannot
# write the code.

# --- build: the wheel, and a venv with the pinned runtime dependencies (hash-checked) --------
FROM python:3.11.14-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# This layer is reused until requirements.lock changes. It holds the worker, flower and sentry
# extras' pins, so SENTRY_DSN works in this image.
COPY requirements.lock /tmp/requirements.lock
RUN python -m venv /opt/b24d \
    && /opt/b24d/bin/pip install --require-hashes -r /tmp/requirements.lock

WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY worker/ worker/
COPY tasks/ tasks/
COPY b24producer/ b24producer/
COPY b24sim/ b24sim/
RUN python -m pip wheel --no-deps --wheel-dir /dist . \
    && /opt/b24d/bin/pip install --no-deps /dist/*.whl \
    && /opt/b24d/bin/pip check

# --- runtime: the venv only ------------------------------------------------------------------
FROM python:3.11.14-slim-bookworm

ENV PATH=/opt/b24d/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# The venv stays root-owned and read-only to the runtime user; Celery never runs as root.
COPY --from=build /opt/b24d /opt/b24d
RUN useradd --system --uid 10001 --create-home --home-dir /home/celery \
        --shell /usr/sbin/nologin celery
USER celery
WORKDIR /home/celery

# The worker's probe (compose gives beat, Flower and the exporter theirs).
HEALTHCHECK --interval=30s --timeout=15s --start-period=30s --retries=3 \
    CMD ["b24-delivery", "health", "worker"]

CMD ["celery", "-A", "worker", "worker", "-Q", "celery,flush", "--loglevel", "INFO"]
