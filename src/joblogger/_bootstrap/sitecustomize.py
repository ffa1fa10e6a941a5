"""Loaded by ``joblogger run`` in the command's interpreter: configures joblogger from the environment.

``joblogger run`` puts this directory first on ``PYTHONPATH`` and sets
``JOBLOGGER_BOOTSTRAP=1``; Python imports the first ``sitecustomize`` it finds
at start-up, which is this one. So that nothing is shadowed, it first runs the
*next* ``sitecustomize`` on ``sys.path`` (the application's own, or
``opentelemetry-instrument``'s, which sets up the SDK that joblogger then
reuses), and only then configures joblogger (:func:`joblogger.cli.bootstrap`),
which also removes the bootstrap from the environment so that the command's
own child processes are not configured.

In a launcher that only prepares the environment and ``exec``s the real
program (``opentelemetry-instrument``), it does nothing: the program's
interpreter is configured instead (by this file or, when the launcher's
``sitecustomize`` comes first, by joblogger's auto-instrumentation entry point).
"""

import importlib.machinery
import importlib.util
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_LAUNCHERS = ("opentelemetry-instrument",)


def _run_next_sitecustomize() -> None:
    rest = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != _HERE]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - as Python itself does for a failing sitecustomize
        print(f"Error in sitecustomize ({spec.origin}); set PYTHONVERBOSE for traceback: {exc!r}", file=sys.stderr)


_run_next_sitecustomize()

if os.environ.get("JOBLOGGER_BOOTSTRAP") == "1" and os.path.basename(sys.argv[0] if sys.argv else "") not in _LAUNCHERS:
    try:
        from joblogger.cli import bootstrap

        bootstrap()
    except Exception as exc:  # noqa: BLE001 - never stop the user's program from starting
        print(f"joblogger: could not configure telemetry: {exc!r}", file=sys.stderr)
