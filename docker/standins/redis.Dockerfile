# CI stand-in for redis:7-alpine (no registry is reachable there): Debian's
# redis-server on the stand-in base, started the way the official image starts
# it (CMD redis-server, WORKDIR /data, protected mode off without a config file,
# redis-cli for health checks, port 6379; starts as root, owns /data to the redis
# user and drops to it).
ARG BASE=python:3.11-slim
FROM ${BASE}
# A CI stand-in follows Debian stable: no version pins.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data \
 && chown redis:redis /data
COPY redis-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
WORKDIR /data
VOLUME /data
EXPOSE 6379
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server"]
