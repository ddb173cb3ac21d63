# Kafka (KRaft, one node) from the same Maven jars as localinfra/kafka.py, for compose.local.yaml.
ARG BASE_IMAGE=akave-gateway-base:bookworm
FROM ${BASE_IMAGE}
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/*
COPY libs/ /opt/kafka/libs/
COPY kafka-start.sh /usr/local/bin/kafka-start
EXPOSE 9092
ENTRYPOINT ["kafka-start"]
