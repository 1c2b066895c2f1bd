#!/usr/bin/env bash
# Makes sure Debian's Chromium is there for the browser tests (Playwright drives it; it never
# downloads a browser of its own). Silent when it is installed; as root on Debian/Ubuntu it
# apt-get installs it; otherwise it says exactly what to install and fails.
set -euo pipefail

CHROMIUM="${HOOKLINE_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "ensure-chromium: $CHROMIUM is missing: installing Debian's chromium with apt-get" >&2
  # Another apt-get (a neighbour's install) may hold the lock: wait for it rather than fail.
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends chromium fonts-dejavu-core
  exit 0
fi
echo "error: the browser tests need Chromium at $CHROMIUM;" \
  "install it (Debian/Ubuntu: sudo apt-get install chromium)" \
  "or point HOOKLINE_CHROMIUM at a Chromium binary" >&2
exit 1
