"""The ``joblogger`` command: ``joblogger demo`` and ``joblogger run -- COMMAND``.

Exit codes: 0 when the job succeeded; 1 when it failed; 130 when interrupted
(Ctrl-C); 2 for a usage error; for ``run``, the command's own exit status. For a
Python program ``run`` *replaces* itself with the command (``exec``, as
``opentelemetry-instrument`` does), so signals reach the command exactly once and
its status is the one the shell sees. Any other command runs as a child that
``run`` supervises (:mod:`joblogger._command`): signals are forwarded to it once,
and ``run`` exits with its status (128+N when signal N killed it). A Python
program whose interpreter cannot import joblogger is handed back by the bootstrap
(see ``joblogger/_bootstrap/sitecustomize.py``) and supervised the same way, with
one warning.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from . import _schedule_env
from ._version import __version__

__all__ = ["bootstrap", "configure_from_env", "main"]

_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
#: Variables ``joblogger run`` sets for the command; the bootstrap removes them once applied.
_BOOTSTRAP_VARS = (
    "JOBLOGGER_BOOTSTRAP",
    "JOBLOGGER_CONSOLE",
    "JOBLOGGER_PLAIN",
    "JOBLOGGER_DEBUG",
    "JOBLOGGER_VERBOSE",
    _schedule_env.ENV_VAR,
    "JOBLOGGER_RUN_FALLBACK",
)
#: Set by the bootstrap when it hands a Python program back: JSON ``{"python": ..., "error": ...}``.
_BOOTSTRAP_FAILED = "JOBLOGGER_BOOTSTRAP_FAILED"
_BOOTSTRAP_DIR = str(Path(__file__).with_name("_bootstrap"))
_bootstrapped = False

DESCRIPTION = """\
Live feedback for background jobs: stages, progress, logs, outcomes and a
summary, shown in the terminal and exported with OpenTelemetry.

Export is on when OTEL_EXPORTER_OTLP_ENDPOINT is set (for example
http://127.0.0.1:4318 for the bundled collector, OTLP/HTTP); otherwise only the terminal
view is shown. The other standard OTEL_* variables apply as usual.

The view writes to stderr (stdout is left to the job): on a terminal, a live
panel per run under the lines that stay (milestones, warnings, errors and the
summary); piped or redirected, those lines plus a progress line every 5 s.
"""

EPILOG = """\
examples:
  joblogger demo                        run the demo job (about 25 s) in the terminal view
  joblogger demo --users 500 --speed 5  a shorter demo
  OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 joblogger demo
                                        also send it to the collector (see README: "See it in Grafana")
  joblogger run -- python my_job.py     run your script with joblogger configured
  joblogger run --job nightly-backup -- /usr/local/bin/backup.sh
                                        any other command: one run, its output lines as its logs
  joblogger run --schedule "0 3 * * *" --tz Europe/Berlin --max-runtime 2h -- python nightly.py
                                        ... and export its schedule (docs/schedules.md)

exit codes: 0 success, 1 the job failed, 130 interrupted, 2 usage error;
'run' returns the command's own exit code.
"""


def _export_wanted() -> bool:
    return any(os.environ.get(name) for name in _ENDPOINT_VARS)


def _view_options(*, plain: bool, debug: bool, verbose: bool) -> dict[str, Any]:
    """Options of the terminal view for the --plain, --debug and --verbose flags."""
    options: dict[str, Any] = {"force_plain": plain, "show_debug": debug}
    if verbose and not debug:
        options["persist_level"] = logging.INFO
    return options


def configure_from_env() -> Any:
    """Configure telemetry the way ``joblogger run`` does, from ``JOBLOGGER_*`` and ``OTEL_*`` variables."""
    from . import otlp

    _schedule_env.apply_env()
    console: bool | dict[str, Any] = False
    if os.environ.get("JOBLOGGER_CONSOLE", "1") != "0":
        console = _view_options(
            plain=os.environ.get("JOBLOGGER_PLAIN") == "1",
            debug=os.environ.get("JOBLOGGER_DEBUG") == "1",
            verbose=os.environ.get("JOBLOGGER_VERBOSE") == "1",
        )
    return otlp.configure(otlp=_export_wanted(), console=console)


def _strip_bootstrap_env() -> None:
    """Keep descendants of the command unconfigured: only the command itself is ``joblogger run``'s."""
    for name in _BOOTSTRAP_VARS:
        os.environ.pop(name, None)
    path = os.environ.get("PYTHONPATH")
    if path is not None:
        rest = [entry for entry in path.split(os.pathsep) if entry and entry != _BOOTSTRAP_DIR]
        if rest:
            os.environ["PYTHONPATH"] = os.pathsep.join(rest)
        else:
            del os.environ["PYTHONPATH"]


def bootstrap() -> None:
    """Configure this process for ``joblogger run`` (once), then remove the bootstrap from the environment.

    Called at start-up by the bootstrap ``sitecustomize`` or, when
    ``opentelemetry-instrument``'s ``sitecustomize`` runs instead, by joblogger's
    auto-instrumentation entry point (after the SDK is set up, so its providers
    are reused). Does nothing unless ``JOBLOGGER_BOOTSTRAP=1``.
    """
    global _bootstrapped
    if _bootstrapped or os.environ.get("JOBLOGGER_BOOTSTRAP") != "1":
        return
    _bootstrapped = True
    try:
        configure_from_env()
    finally:
        _strip_bootstrap_env()


def _fallback_warning(failed: str, argv: list[str]) -> str:
    """The one warning of a Python program supervised because its interpreter cannot import joblogger."""
    try:
        reason = json.loads(failed)
        python, error = str(reason["python"]), str(reason["error"])
    except (ValueError, TypeError, KeyError):
        python, error = argv[0], failed
    return (
        f"{python} cannot import joblogger[otlp] ({error}), so {os.path.basename(argv[0])!r} "
        "cannot report its own runs; supervising it as one run instead (docs/commands.md). "
        f"Install joblogger in that interpreter ({python} -m pip install 'joblogger[otlp]') "
        f"or run the program with one that has it ({sys.executable})."
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="joblogger",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"joblogger {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def view_flags(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--plain", action="store_true", help="plain line-by-line output even on a terminal")
        sub.add_argument("--no-console", action="store_true", help="no terminal view (export only)")
        sub.add_argument("--debug", action="store_true", help="show debug log lines too (and keep every line)")
        sub.add_argument(
            "--verbose", action="store_true", help="keep info lines too, not only milestones, warnings and errors"
        )

    demo = commands.add_parser(
        "demo",
        help="run the reference match-scores job on generated data",
        description="Run the reference match-scores job on generated users: stages, progress, "
        "batch logs, skipped users with warnings, two failures with errors, and the summary.",
    )
    demo.add_argument("--users", type=int, default=5_000, help="users to score (default: 5000)")
    demo.add_argument(
        "--speed", type=float, default=1.0, help="pacing multiplier; 0 = no pauses (default: 1, about 25 s)"
    )
    demo.add_argument("--seed", type=int, default=7, help="seed of the generated data (default: 7)")
    demo.add_argument("--run-id", default=None, help="run id (default: random)")
    demo.add_argument("--fail", action="store_true", help="fail halfway through, to see a failed run")
    demo.add_argument("--json", action="store_true", help="print the summary as JSON on stdout at the end")
    view_flags(demo)
    _schedule_env.add_options(demo)

    run = commands.add_parser(
        "run",
        help="run a command with joblogger configured from the environment",
        description="Run COMMAND with joblogger configured: OTLP export when OTEL_EXPORTER_OTLP_ENDPOINT "
        "is set. A Python program runs in-process with the terminal view, like opentelemetry-instrument; "
        "any other command (a shell script, a binary) becomes one run: its output lines are passed "
        "through unchanged and logged, its exit status is the run's result (docs/commands.md).",
    )
    run.add_argument("--job", default=None, help="job name of a command's run (default: the program's name)")
    run.add_argument("--run-id", default=None, help="run id of a command's run (default: random)")
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS...]")
    view_flags(run)
    _schedule_env.add_options(run)
    return parser


def _demo(args: argparse.Namespace) -> int:
    from . import otlp
    from .demo import run_match_scores

    console: bool | dict[str, Any] = (
        False if args.no_console else _view_options(plain=args.plain, debug=args.debug, verbose=args.verbose)
    )
    try:
        _schedule_env.apply_args(args)
    except ValueError as exc:
        print(f"joblogger demo: {exc}", file=sys.stderr)
        return 2
    telemetry = otlp.configure(otlp=_export_wanted(), console=console)
    try:
        summary = run_match_scores(
            users=args.users, speed=args.speed, seed=args.seed, job_run_id=args.run_id, fail=args.fail
        )
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the job's failure is the command's failure
        telemetry.shutdown()
        print(f"joblogger demo: the job failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        telemetry.shutdown()
    if args.json:
        print(json.dumps(summary.to_dict()))
    elif args.no_console:
        print(summary.line)
    return 0 if summary.result == "success" else 1


def _run(args: argparse.Namespace, raw: list[str]) -> int:
    """``joblogger run``; ``raw``: its own arguments (``run ... -- COMMAND``), for the bootstrap's fallback."""
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        print("joblogger run: give a command after --, e.g. joblogger run -- python my_job.py", file=sys.stderr)
        return 2
    from ._command import is_python_command

    try:
        schedule = _schedule_env.env_value(args)
    except ValueError as exc:
        print(f"joblogger run: {exc}", file=sys.stderr)
        return 2
    failed = os.environ.pop(_BOOTSTRAP_FAILED, None)
    if failed is not None:  # handed back by the bootstrap of an interpreter without joblogger
        _strip_bootstrap_env()
        warning = _fallback_warning(failed, argv)
        print(f"joblogger run: {warning}", file=sys.stderr, flush=True)
        return _run_command(args, argv, warning=warning)
    if not is_python_command(argv):
        return _run_command(args, argv)
    env = dict(os.environ)
    env.pop(_schedule_env.ENV_VAR, None)
    if schedule is not None:
        env[_schedule_env.ENV_VAR] = schedule
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_BOOTSTRAP_DIR, env.get("PYTHONPATH", "")) if p)
    env["JOBLOGGER_BOOTSTRAP"] = "1"
    env["JOBLOGGER_CONSOLE"] = "0" if args.no_console else "1"
    env["JOBLOGGER_PLAIN"] = "1" if args.plain else "0"
    env["JOBLOGGER_DEBUG"] = "1" if args.debug else "0"
    env["JOBLOGGER_VERBOSE"] = "1" if args.verbose else "0"
    if sys.executable:  # where the bootstrap hands the command back if its interpreter lacks joblogger
        env["JOBLOGGER_RUN_FALLBACK"] = json.dumps([sys.executable, "-m", "joblogger", *raw])
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        # Become the command: no wrapper process left to forward (and double-deliver) signals.
        os.execvpe(argv[0], argv, env)  # noqa: S606 - the user's command, as given
    except OSError as exc:
        print(f"joblogger run: cannot start {argv[0]!r}: {exc}", file=sys.stderr)
        return 127
    return 0  # not reached: exec does not return


def _job_options(args: argparse.Namespace) -> dict[str, Any]:
    """``create_job_logger`` keyword options of a command's run, from the ``run`` flags."""
    schedule = _schedule_env.schedule_of(args)
    return {} if schedule is None else {"schedule": schedule}


def _run_command(args: argparse.Namespace, argv: list[str], *, warning: str | None = None) -> int:
    """Supervise a command as one run (see joblogger._command); ``warning``: logged on the run first."""
    from . import otlp
    from ._command import run_command, start_command_run

    # The output is the command's alone: job records are exported, never printed (stderr lines
    # would otherwise come out twice, through logging's last-resort handler).
    logging.getLogger("joblogger").setLevel(logging.CRITICAL + 1)
    # No SIGTERM handler of joblogger's: the supervisor forwards signals to the command instead.
    telemetry = otlp.configure(otlp=_export_wanted(), console=False, handle_sigterm=False)
    try:
        job = start_command_run(argv, job_name=args.job, run_id=args.run_id, **_job_options(args))
        if warning is not None:
            job.warning(warning)
        return run_command(argv, job)
    finally:
        # The command has ended: a late SIGTERM or Ctrl-C must not cut the (bounded) final flush short
        # nor replace the command's exit status; as for Python programs, it is dropped.
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with contextlib.suppress(ValueError):  # not the main thread: nothing to hold
                signal.signal(signum, signal.SIG_IGN)
        telemetry.shutdown()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``joblogger`` command; returns the exit code."""
    raw = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(raw)
    if args.command == "demo":
        return _demo(args)
    return _run(args, raw)


if __name__ == "__main__":
    sys.exit(main())
