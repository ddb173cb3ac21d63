# PostgreSQL 15 from Debian, for compose.local.yaml: the postgres:15 image's POSTGRES_USER,
# POSTGRES_PASSWORD and POSTGRES_DB on first start, data in /var/lib/postgresql/data.
ARG BASE_IMAGE=akave-gateway-base:bookworm
FROM ${BASE_IMAGE}
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/*
ENV PATH=/usr/lib/postgresql/15/bin:$PATH
COPY postgres-start.sh /usr/local/bin/postgres-start
EXPOSE 5432
ENTRYPOINT ["postgres-start"]
