#!/usr/bin/env bash
# Installs what the web interface's browser tests (test/web) need: Debian's chromium, driven by
# playwright-core (its own browser download cannot work on a closed network). Idempotent: does
# nothing when /usr/bin/chromium already runs. Called by `npm test` and .ci/run.
set -euo pipefail

browser=/usr/bin/chromium
if [[ -x "$browser" ]] && "$browser" --version >/dev/null 2>&1; then
  printf 'setup-chromium: %s\n' "$("$browser" --version)"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  printf 'setup-chromium: no apt-get on this machine; install Chromium yourself so that %s exists (Debian/Ubuntu package: chromium)\n' "$browser" >&2
  exit 1
fi
if [[ "$(id -u)" != 0 ]]; then
  printf 'setup-chromium: the Debian package chromium is missing; run as root: apt-get install -y chromium\n' >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || printf 'setup-chromium: apt-get update failed; trying the install with the current package lists\n' >&2
if ! apt-get install -y -qq chromium fonts-dejavu-core >/dev/null; then
  printf 'setup-chromium: apt-get install chromium failed; the browser tests need it (see the output above)\n' >&2
  exit 1
fi
"$browser" --version >/dev/null || {
  printf 'setup-chromium: chromium installed but %s --version fails\n' "$browser" >&2
  exit 1
}
printf 'setup-chromium: installed %s\n' "$("$browser" --version)"
