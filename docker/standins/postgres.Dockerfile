# CI stand-in for postgres:16 (no registry is reachable there): Debian's
# PostgreSQL (15 on bookworm) on the stand-in base, with the official image's interface:
# POSTGRES_USER / POSTGRES_PASSWORD (or _FILE) / POSTGRES_DB on first start, PGDATA at
# /var/lib/postgresql/data, port 5432, pg_isready for health checks; starts as
# root, prepares PGDATA and the socket directory, drops to the postgres user.
ARG BASE=python:3.11-slim
FROM ${BASE}
# A CI stand-in follows Debian stable: no version pins.
# hadolint ignore=DL3008
RUN mkdir -p /etc/postgresql-common/createcluster.d \
 && echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.d/no-main.conf \
 && apt-get update \
 && apt-get install -y --no-install-recommends postgresql \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
 && chown postgres:postgres /var/lib/postgresql/data /var/run/postgresql \
 && chmod 0700 /var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENV PGDATA=/var/lib/postgresql/data
VOLUME /var/lib/postgresql/data
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
