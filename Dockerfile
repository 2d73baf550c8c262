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
COPY pyproject.toml README.md LICENSE ./
COPY ondine_otel ./ondine_otel
# The ops files the package carries (`ondine-otel ops export`), at their repository paths.
COPY grafana/dashboards ./grafana/dashboards
COPY grafana/provisioning ./grafana/provisioning
COPY deploy/prometheus ./deploy/prometheus
COPY deploy/RUNBOOKS.md ./deploy/RUNBOOKS.md
COPY deploy/alertmanager ./deploy/alertmanager
COPY deploy/otel-collector ./deploy/otel-collector
COPY deploy/tempo ./deploy/tempo
COPY deploy/k8s ./deploy/k8s
RUN pip install . && useradd --uid 10001 --create-home ondine

COPY deploy/demo ./demo
USER 10001
# `docker compose run --rm demo ondine-otel demo` prints one run's trace tree instead.
CMD ["sh", "/app/demo/loop.sh"]
