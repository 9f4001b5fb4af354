#!/usr/bin/env bash
# Starts one of this analysis's Python scripts with an interpreter that has numpy: NCAP_PYTHON
# if set, then Debian's /usr/bin/python3 (python3-numpy), then whatever python3 is on PATH.
# A python3 without numpy is common (pyenv, venvs), so each candidate is asked, not assumed.
set -u
# No __pycache__ next to the scripts: env/ is the image's content (its hash) and may be read-only there.
export PYTHONDONTWRITEBYTECODE=1
for candidate in "${NCAP_PYTHON:-}" /usr/bin/python3 python3; do
  [[ -n "$candidate" ]] || continue
  command -v "$candidate" >/dev/null 2>&1 || continue
  if "$candidate" -c 'import numpy' 2>/dev/null; then exec "$candidate" "$@"; fi
done
printf 'no python3 with numpy found (tried NCAP_PYTHON, /usr/bin/python3, python3): install the Debian package python3-numpy (apt-get install -y python3-numpy, or scripts/setup-python.sh in the NeuroCAAS-TS repository)\n' >&2
exit 127
