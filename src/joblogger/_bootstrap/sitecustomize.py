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

When this interpreter cannot import joblogger (a system ``python3`` while
joblogger lives in a virtualenv, or joblogger installed without its ``otlp``
extra), the program could not report anything. Instead of running it
unwatched, this file hands the command back to ``joblogger run``: it ``exec``s
the argv in ``JOBLOGGER_RUN_FALLBACK`` (``joblogger run`` in the interpreter
joblogger runs in, with the same options and command) with
``JOBLOGGER_BOOTSTRAP_FAILED`` saying why, and that ``joblogger run``
supervises the command as one run (docs/commands.md). Nothing of the program
has run yet: Python imports ``sitecustomize`` before the program.
"""

from __future__ import annotations  # this file runs in the command's interpreter, whichever Python 3 it is

import importlib.machinery
import importlib.util
import json
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_LAUNCHERS = ("opentelemetry-instrument",)
_FALLBACK = "JOBLOGGER_RUN_FALLBACK"
_FAILED = "JOBLOGGER_BOOTSTRAP_FAILED"


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


def _hand_back(fallback: str | None, exc: ImportError) -> None:
    """Let ``joblogger run`` supervise the command instead; returns only if it cannot be started."""
    try:
        argv = json.loads(fallback or "null")
    except ValueError:
        argv = None
    if not (isinstance(argv, list) and argv and all(isinstance(word, str) for word in argv)):
        return
    env = dict(os.environ)
    for name in ("JOBLOGGER_BOOTSTRAP", _FALLBACK):
        env.pop(name, None)
    path = [entry for entry in env.get("PYTHONPATH", "").split(os.pathsep) if entry and entry != _HERE]
    if path:
        env["PYTHONPATH"] = os.pathsep.join(path)
    else:
        env.pop("PYTHONPATH", None)
    env[_FAILED] = json.dumps({"python": sys.executable, "error": f"{type(exc).__name__}: {exc}"})
    try:
        os.execve(argv[0], argv, env)  # noqa: S606 - joblogger run itself, as it asked
    except OSError as error:
        print(f"joblogger: cannot hand the command back to joblogger run ({argv[0]}): {error}", file=sys.stderr)


if os.environ.get("JOBLOGGER_BOOTSTRAP") == "1" and os.path.basename(sys.argv[0] if sys.argv else "") not in _LAUNCHERS:
    _fallback = os.environ.get(_FALLBACK)  # read now: the bootstrap removes it from the environment
    try:
        from joblogger.cli import bootstrap

        bootstrap()
    except ImportError as exc:  # this interpreter lacks joblogger (or its otlp extra)
        _hand_back(_fallback, exc)
        print(f"joblogger: could not configure telemetry: {exc!r}", file=sys.stderr)
    except Exception as exc:  # noqa: BLE001 - never stop the user's program from starting
        print(f"joblogger: could not configure telemetry: {exc!r}", file=sys.stderr)
