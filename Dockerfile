# One image for the sample worker, the producer, the shipper and the one-shot setup of docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY celery_logs celery_logs
COPY pipelines pipelines
COPY kibana kibana
RUN pip install --no-cache-dir '.[redis]' && useradd --uid 1000 --create-home app && mkdir /logs && chown app /logs
USER app
