# stressor as a long-running soak service: `docker compose up` runs it next to
# Prometheus and Grafana (see docker-compose.yml).
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only what the package build reads is copied, so edits to tests or dashboards do
# not invalidate this layer.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY stressor ./stressor
RUN pip install . && rm -rf /src

# Cycle files go to a private directory under /tmp, which this user can write.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin stressor
USER stressor
WORKDIR /home/stressor

EXPOSE 9466
ENTRYPOINT ["stressor"]
CMD ["soak", "--metrics-host", "0.0.0.0"]
