# syntax=docker/dockerfile:1
# payment-window: one image for every process (serve, worker, relay, expire-due, reconcile,
# migrate); the ECS task definitions pick the command. Build (scripts/image-build.sh does this):
#   docker build --build-arg VERSION=$(version from pyproject.toml) --build-arg REVISION=$(git sha) .

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
# The version is pyproject.toml's; the build stops when the label would say another.
ARG VERSION
# Exactly uv.lock, nothing resolved on the day of the build: uv itself is pinned by hash, and
# `uv sync --locked` refuses a lock that no longer matches pyproject.toml. devstripe's
# pyproject.toml comes in only so the lock can be checked whole; its code never does.
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_PROJECT_ENVIRONMENT=/opt/payment-window UV_PYTHON_DOWNLOADS=never UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy UV_NO_CACHE=1
WORKDIR /build
COPY scripts/uv-requirements.txt ./scripts/
RUN python -m pip install --require-hashes -r scripts/uv-requirements.txt
COPY pyproject.toml uv.lock README.md ./
COPY devstripe/pyproject.toml ./devstripe/
COPY src ./src
# The timer element's modules: src/payment_window/web/static links to them (one source).
COPY clients/web/src ./clients/web/src
RUN grep -qx "version = \"${VERSION}\"" pyproject.toml \
      || { echo "VERSION=${VERSION} is not pyproject.toml's version: build with scripts/image-build.sh" >&2; exit 1; } \
 && uv sync --locked --no-dev --no-editable

FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION
ARG REVISION=unknown
LABEL org.opencontainers.image.title="payment-window" \
      org.opencontainers.image.description="Enforces payment windows on Stripe Checkout sessions" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
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
