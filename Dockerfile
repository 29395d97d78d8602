# syntax=docker/dockerfile:1
#
# One image for every botter process:
#   docker run botter:0.1.0                 # botter serve (the default command), port 3000
#   docker run botter:0.1.0 worker          # botter worker (metrics on 3001)
#   docker run botter:0.1.0 migrate         # botter migrate, then exit
#   docker run botter:0.1.0 bot add --help  # any other botter command
# Build:  docker build -t botter:0.1.0 .
# Settings come from the environment (docs/settings.md): DATABASE_URL, REDIS_URL and
# BOTTER_SECRET_KEYS at least. The image holds no secrets and no .env file.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- builder: the pinned dependencies and botter itself, in a venv --------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv

WORKDIR /build

# The lock alone first, so this layer is rebuilt only when the pins change. Every pinned
# package ships a manylinux wheel (psycopg-binary brings its own libpq), so no compiler
# or system library is needed.
COPY requirements.lock ./
RUN pip install -r requirements.lock

# botter itself, without touching the pinned dependencies.
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-deps . \
    && pip check \
    && botter --help > /dev/null

# ---- runtime: the venv on a clean base, run as an unprivileged user -------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="botter" \
      org.opencontainers.image.description="Paid access to Telegram channels and groups, sold for Telegram Stars" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="MIT"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    PORT=3000 \
    BOTTER_DATA_DIR=/var/lib/botter

# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can verify it and volumes can be
# prepared for it. The data directory is used only by the embedded engines (when
# DATABASE_URL or REDIS_URL is unset) and the generated key (when BOTTER_SECRET_KEYS is);
# a deployment sets all three and may run with a read-only root filesystem.
RUN groupadd --system --gid 10001 botter \
    && useradd --system --uid 10001 --gid botter --home-dir /var/lib/botter \
       --no-create-home --shell /usr/sbin/nologin botter \
    && install -d -o botter -g botter -m 0700 /var/lib/botter

COPY --from=builder /opt/venv /opt/venv
COPY deploy/docker/healthcheck.py /usr/local/lib/botter/healthcheck.py

# botter reads a .env from its working directory: this one is empty and not writable, so
# only what the container is given counts.
WORKDIR /app

USER 10001:10001

EXPOSE 3000

# /health for `botter serve`; the script asks the worker's metrics port instead when the
# container runs `botter worker`, and passes `botter migrate`.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "/usr/local/lib/botter/healthcheck.py"]

# SIGTERM (Docker's default stop signal) makes every botter process finish cleanly:
# serve drains requests for up to 20 s, worker lets running jobs finish for up to 10 s.
STOPSIGNAL SIGTERM
ENTRYPOINT ["botter"]
CMD ["serve"]
