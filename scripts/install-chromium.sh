#!/usr/bin/env bash
# Installs Debian's chromium (the headless browser the dashboard test drives) when missing.
# Needs root or sudo and the Debian package registry. Prints the browser's path.
set -euo pipefail
for name in chromium chromium-browser; do
  if command -v "$name" >/dev/null; then command -v "$name"; exit 0; fi
done
SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "install-chromium: run as root or install 'chromium' (apt-get install chromium)" >&2; exit 2; }
  SUDO=sudo
fi
echo "install-chromium: installing Debian's chromium (once; ~100 MB)" >&2
$SUDO apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >&2
command -v chromium
