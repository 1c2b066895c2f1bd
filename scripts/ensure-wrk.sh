#!/usr/bin/env bash
# Makes sure wrk (the load generator of the bench's http scenario) is installed:
# already on PATH -> silent; Debian/Ubuntu as root -> apt-get install wrk;
# otherwise say how to install it and exit 1 (`make bench` then stops before running).
set -euo pipefail

if command -v wrk >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "ensure-wrk: wrk is missing: installing it with apt-get" >&2
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
  fi
  exit 0
fi
echo "ensure-wrk: the bench's http scenario needs wrk; install it" \
  "(Debian/Ubuntu: sudo apt-get install wrk), or leave http out:" \
  "make bench BENCH_ARGS='--scenarios fanout,fanout-1,steady,steady-1,noisy,ceiling'" >&2
exit 1
