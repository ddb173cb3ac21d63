# One image for every gateway process: `akave-gateway api|executor|projector|notifier|migrate|...`.
# No secrets are baked in: signing keys come from the environment or mounted files at run time
# (AKAVE_PRIVATE_KEY(_FILE), CHAIN_KEY_POOL_FILE), and .env is excluded by .dockerignore.
#
#   docker build -t akave-gateway .
#
# BASE_IMAGE: any Debian-like image with Python 3.11 and its venv module. Users keep the
# default; a machine without a registry builds on one made from Debian's packages
# (localinfra/base_image.py). A build that must trust an extra CA to reach the package index
# passes it as a secret, never a layer: --secret id=pip_ca,src=/etc/ssl/certs/ca-certificates.crt
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
SHELL ["/bin/sh", "-eu", "-c"]
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/akave-gateway/bin:$PATH
RUN python3 -m venv /opt/akave-gateway

# The Akave SDK is not on PyPI and needs git to install; only images for AKAVE_BACKEND=akave
# need it: docker build --build-arg INSTALL_AKAVE_SDK=true
ARG INSTALL_AKAVE_SDK=false
ARG AKAVE_SDK_REQUIREMENT="akavesdk @ git+https://github.com/akave-ai/akavesdk-py"

# Dependencies first, from pyproject.toml alone: a change to the source reuses this layer.
WORKDIR /tmp/src
COPY pyproject.toml README.md ./
RUN --mount=type=secret,id=pip_ca \
    if [ -f /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi; \
    python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
      > /tmp/requirements.txt; \
    pip install --requirement /tmp/requirements.txt
# The SDK's version is the Git reference in AKAVE_SDK_REQUIREMENT, and git lives in this build
# stage only (it is not in the image): neither is pinned here.
# hadolint ignore=DL3008,DL3013
RUN --mount=type=secret,id=pip_ca \
    if [ "$INSTALL_AKAVE_SDK" = "true" ]; then \
      if [ -f /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi; \
      apt-get update; \
      apt-get install -y --no-install-recommends git; \
      pip install "$AKAVE_SDK_REQUIREMENT"; \
    fi

COPY shared ./shared
COPY services ./services
COPY cli ./cli
COPY localinfra ./localinfra
RUN --mount=type=secret,id=pip_ca \
    if [ -f /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi; \
    pip install --no-deps .

FROM ${BASE_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/akave-gateway/bin:$PATH \
    LOG_FORMAT=json \
    API_HOST=0.0.0.0 \
    METRICS_HOST=0.0.0.0
COPY --from=build /opt/akave-gateway /opt/akave-gateway

# `akave-gateway migrate` reads alembic.ini from the working directory, and alembic.ini
# names the migrations folder next to it.
WORKDIR /app
COPY alembic.ini ./
COPY alembic ./alembic

# A numeric user, so that Kubernetes' runAsNonRoot can check it without a passwd lookup.
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin gateway
USER 10001:10001

EXPOSE 8000 9101 9102 9103
ENTRYPOINT ["akave-gateway"]
CMD ["api"]
