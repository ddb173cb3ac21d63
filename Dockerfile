# One image for every gateway process: `akave-gateway api|executor|projector|migrate|...`.
# No secrets are baked in: the signing key comes from the environment or a mounted file at
# run time (AKAVE_PRIVATE_KEY / AKAVE_PRIVATE_KEY_FILE), and .env is excluded by .dockerignore.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LOG_FORMAT=json \
    API_HOST=0.0.0.0 \
    METRICS_HOST=0.0.0.0

# The Akave SDK is not on PyPI and needs git to install; only images for AKAVE_BACKEND=akave
# need it: docker compose build --build-arg INSTALL_AKAVE_SDK=true
ARG INSTALL_AKAVE_SDK=false
ARG AKAVE_SDK_REQUIREMENT="akavesdk @ git+https://github.com/akave-ai/akavesdk-py"

# Build from a scratch copy of the source, then drop it: the installed package is what runs.
COPY pyproject.toml README.md /tmp/src/
COPY shared /tmp/src/shared
COPY services /tmp/src/services
COPY cli /tmp/src/cli
COPY localinfra /tmp/src/localinfra
RUN pip install /tmp/src \
    && if [ "$INSTALL_AKAVE_SDK" = "true" ]; then \
         apt-get update \
         && apt-get install -y --no-install-recommends git \
         && pip install "$AKAVE_SDK_REQUIREMENT" \
         && apt-get purge -y --auto-remove git \
         && rm -rf /var/lib/apt/lists/*; \
       fi \
    && rm -rf /tmp/src

# `akave-gateway migrate` reads alembic.ini from the working directory, and alembic.ini
# names the migrations folder next to it.
WORKDIR /app
COPY alembic.ini ./
COPY alembic ./alembic

RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin gateway
USER gateway

EXPOSE 8000 9101 9102 9103
ENTRYPOINT ["akave-gateway"]
CMD ["api"]
