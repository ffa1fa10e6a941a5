"""Loaded by ``joblogger run`` in the child interpreter: configures joblogger from the environment.

``joblogger run`` puts this directory first on ``PYTHONPATH`` and sets
``JOBLOGGER_BOOTSTRAP=1``; Python imports ``sitecustomize`` at start-up.
"""

import os
import sys

if os.environ.get("JOBLOGGER_BOOTSTRAP") == "1":
    try:
        from joblogger.cli import configure_from_env

        configure_from_env()
    except Exception as exc:  # noqa: BLE001 - never stop the user's program from starting
        print(f"joblogger: could not configure telemetry: {exc!r}", file=sys.stderr)
