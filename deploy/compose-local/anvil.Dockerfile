# anvil, the binary of localinfra/anvil.py's npm package, for compose.local.yaml.
ARG BASE_IMAGE=akave-gateway-base:bookworm
FROM ${BASE_IMAGE}
COPY anvil /usr/local/bin/anvil
EXPOSE 8545
ENTRYPOINT ["anvil"]
