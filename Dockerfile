# syntax=docker/dockerfile:1
# Pipeline Guard image: `docker build -t pipeline-guard .`
# Build stage installs the pinned dependencies into a venv; the final stage carries only that venv,
# the migrations and no compiler, and runs as an unprivileged user.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first so that a code change does not reinstall them (the layer is cached).
COPY pyproject.toml constraints.txt README.md ./
RUN mkdir app && touch app/__init__.py \
    && pip install -c constraints.txt . \
    && pip uninstall -y pipeline-guard
# .dockerignore lets in only what the service needs: app/, migrations/, alembic.ini, metadata.
COPY . .
RUN pip install --no-deps -c constraints.txt . \
    && rm -rf build ./*.egg-info \
    && python -m compileall -q /opt/venv/lib

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="pipeline-guard" \
      org.opencontainers.image.description="Self-healing guard for ML and data pipelines" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 guard \
    && useradd --system --uid 10001 --gid guard --home-dir /app --shell /usr/sbin/nologin guard
WORKDIR /app
COPY --from=builder /opt/venv /opt/venv
# Source tree (migrations/ and alembic.ini are read by `serve`, which migrates before serving).
COPY --from=builder /src /app
# var/ holds the embedded SQLite database when no PIPELINE_DATABASE_URL is given.
RUN mkdir -p /app/var && chown guard:guard /app/var
USER guard:guard
EXPOSE 8080
# slim has no curl: probe liveness with the standard library.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4).status == 200 else 1)"]
# `serve` runs the migrations, creates the first admin from PIPELINE_ADMIN_PASSWORD, then serves
# uvicorn with uvloop and httptools.
CMD ["pipeline-guard", "serve", "--host", "0.0.0.0", "--port", "8080"]
