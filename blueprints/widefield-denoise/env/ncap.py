"""The NeuroCAAS workflow contract for a Python analysis: paths from NCAP_* variables, the
config as JSON, one clear error line on stderr and a non-zero exit on failure."""

import json
import os
import sys


class WorkflowError(Exception):
    """A problem the researcher can fix: printed as one line, exit code 1."""


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def env_path(name):
    value = os.environ.get(name)
    if not value:
        raise WorkflowError(f"environment variable {name} is not set; the platform sets it (run through neurocaas)")
    return value


def read_config(path, defaults, checks):
    """Reads the JSON config; fills `defaults`; `checks` maps a key to (predicate, expectation)."""
    try:
        with open(path, encoding="utf-8") as handle:
            value = json.load(handle)
    except (OSError, ValueError) as error:
        raise WorkflowError(f"config {path} is not readable JSON: {error}")
    if not isinstance(value, dict):
        raise WorkflowError(f"config must be a JSON object, got {type(value).__name__}")
    unknown = sorted(set(value) - set(defaults))
    if unknown:
        raise WorkflowError(f"config has unknown keys {unknown}; allowed: {sorted(defaults)}")
    config = {**defaults, **value}
    for key, (ok, expected) in checks.items():
        if not ok(config[key]):
            raise WorkflowError(f'config key "{key}" must be {expected}, got {json.dumps(config[key])}')
    return config


def write_json(path, value):
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(value, handle, indent=2)
        handle.write("\n")


def run(main):
    """Runs main(); a WorkflowError becomes one stderr line and exit code 1."""
    try:
        main()
    except WorkflowError as error:
        fail(str(error))
