#!/bin/sh
# As the official image: a redis-server without a config file listens on every
# interface with protected mode off (the network is the container's own); as
# root, /data is given to the redis user and the server runs as that user.
set -e
if [ "${1#-}" != "$1" ]; then
    set -- redis-server "$@"
fi
if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
    find . \! -user redis -exec chown redis '{}' +
    exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi
if [ "$1" = redis-server ]; then
    shift
    set -- redis-server --bind '*' --protected-mode no "$@"
fi
exec "$@"
