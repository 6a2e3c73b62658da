# The worker image: one image for the worker, beat and Flower services (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Pinned runtime dependencies first: this layer is reused until requirements.lock changes.
COPY requirements.lock ./
RUN pip install -r requirements.lock

COPY worker/ ./worker/
COPY tasks/ ./tasks/
COPY b24producer/ ./b24producer/

# Never run Celery as root (it warns, and a compromised task would own the container).
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin celery \
    && chown -R celery:celery /app
USER celery

# Celery's beat writes its schedule file to the working directory: keep it writable.
CMD ["celery", "-A", "worker", "worker", "-Q", "celery,flush", "--loglevel", "INFO"]
