# Image of the compose stack's `demo` service (deploy/docker-compose.yml) and of the Kubernetes
# CronJob example (deploy/k8s): ondine-otel installed from this checkout, plus the example job.
# Where its telemetry goes is set by the OTEL_* / ONDINE_OTEL_* environment, not baked in.
FROM python:3.12-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True

WORKDIR /app
COPY pyproject.toml README.md ./
COPY ondine_otel ./ondine_otel
RUN pip install . && useradd --uid 10001 --create-home ondine

COPY deploy/demo ./demo
USER 10001
# `docker compose run --rm demo ondine-otel demo` prints one run's trace tree instead.
CMD ["sh", "/app/demo/loop.sh"]
