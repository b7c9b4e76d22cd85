# syntax=docker/dockerfile:1
# payment-window: one image for every process (serve, worker, relay, expire-due, reconcile,
# migrate); the ECS task definitions pick the command. Build: docker build -t payment-window .

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /build
COPY pyproject.toml README.md ./
COPY src ./src
# The timer element's modules: src/payment_window/web/static links to them (one source).
COPY clients/web/src ./clients/web/src
RUN python -m pip wheel --wheel-dir /wheels . \
 && python -m venv /opt/payment-window \
 && /opt/payment-window/bin/pip install --no-index --find-links /wheels payment-window \
 && /opt/payment-window/bin/python -m compileall -q /opt/payment-window

FROM ${PYTHON_IMAGE} AS runtime
# Production mode: start-up stops without a Stripe key or JWT secret; no stand-in is in the image.
ENV PATH=/opt/payment-window/bin:$PATH \
    PW_ENV=production \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PW_LOG_JSON=true
RUN groupadd --system --gid 10001 payment-window \
 && useradd --system --uid 10001 --gid payment-window --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin payment-window
COPY --from=builder /opt/payment-window /opt/payment-window
# A writable working directory only for the embedded SQLite default (development); production
# sets PW_DATABASE_URL and runs with a read-only root filesystem.
WORKDIR /srv/payment-window
RUN chown payment-window:payment-window /srv/payment-window
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=3)"]
ENTRYPOINT ["payment-window"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
