#!/usr/bin/env bash
# System packages the tests use: Debian's Chromium for the browser tests, Postfix and Rspamd
# for the gateway tests (tests/mta, private instances; the packages' own services are never
# started or configured). Installed only when missing and when we can (root with apt-get);
# otherwise those tests skip with a reason.
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/sbin/postfix ] || missing+=(postfix)
[ -x /usr/bin/rspamd ] || missing+=(rspamd)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's ${missing[*]} for the tests..." >&2
  if [[ " ${missing[*]} " == *" postfix "* ]]; then
    # Otherwise Postfix's installer asks which kind of mail system this is.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "note: ${missing[*]} missing; the tests needing them will skip (apt-get install ${missing[*]})" >&2
fi
