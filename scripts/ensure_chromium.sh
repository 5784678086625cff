#!/usr/bin/env bash
# Install Debian's Chromium (the explorer's browser tests drive it with Playwright) unless it is
# already at /usr/bin/chromium. Quiet and idempotent; needs root (or sudo) only when it installs.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "/usr/bin/chromium is missing and apt-get is not available: install Chromium by hand" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq chromium >/dev/null
test -x /usr/bin/chromium
