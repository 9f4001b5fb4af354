#!/usr/bin/env bash
# Installs what the Python sample analyses (blueprints/widefield-*, blueprints/ensemble-pose)
# need on the local backend: Debian's python3 with numpy. Idempotent: does nothing when
# /usr/bin/python3 already imports numpy. Called by .ci/run; run it by hand once on a new machine.
set -euo pipefail

python=/usr/bin/python3
if [[ -x "$python" ]] && "$python" -c 'import numpy' 2>/dev/null; then
  printf 'setup-python: %s with numpy %s is ready\n' "$python" "$("$python" -c 'import numpy; print(numpy.__version__)')"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  printf 'setup-python: no apt-get on this machine; install Python 3 with numpy yourself (Debian/Ubuntu package: python3-numpy)\n' >&2
  exit 1
fi
if [[ "$(id -u)" != 0 ]]; then
  printf 'setup-python: the Debian package python3-numpy is missing; run as root: apt-get install -y python3-numpy\n' >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# An old or empty package list finds nothing; refresh it once before installing.
apt-get update -qq || printf 'setup-python: apt-get update failed; trying the install with the current package lists\n' >&2
if ! apt-get install -y -qq python3-numpy >/dev/null; then
  printf 'setup-python: apt-get install python3-numpy failed; the sample analyses need it (see the output above)\n' >&2
  exit 1
fi
"$python" -c 'import numpy' || {
  printf 'setup-python: python3-numpy installed but %s still cannot import numpy\n' "$python" >&2
  exit 1
}
printf 'setup-python: installed python3-numpy for %s\n' "$python"
