#!/usr/bin/env bash
# System packages the tests use: Debian's Chromium for the browser tests. Installed only
# when missing and when we can (root with apt-get); otherwise those tests skip with a reason.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium for the browser tests..." >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
else
  echo "note: /usr/bin/chromium is missing; browser tests will skip (apt-get install chromium)" >&2
fi
