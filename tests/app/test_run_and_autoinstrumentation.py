"""`joblogger run`, `opentelemetry-instrument` and drop-in logs, in real processes.

The SDK's console exporters (``OTEL_*_EXPORTER=console``) print what reaches the
SDK's export pipeline on stdout, so these tests see exactly what a collector
would be sent. The live-stack versions are in tests/integration/test_dropin_live.py.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

PYTHON = sys.executable
JOBLOGGER = [PYTHON, "-m", "joblogger"]
INSTRUMENT = shutil.which("opentelemetry-instrument", path=str(Path(PYTHON).parent)) or "opentelemetry-instrument"
BODY = re.compile(r'^\s*"body": "(.*)",?$', re.MULTILINE)

JOB = textwrap.dedent("""
    import os
    from opentelemetry import trace
    from joblogger import create_job_logger

    with create_job_logger("run-1", "dropin-job") as job:
        job.set_stage("Scanning")
        job.info("an info line", n=1)
        job.milestone("half way")
        job.warning("a warning line")
        job.increment_progress(5)
    print("provider:", type(trace.get_tracer_provider()).__name__, flush=True)
""")
#: The job's log records, as bodies: each must reach the SDK exactly once.
BODIES = ["Starting: Scanning", "an info line", "half way", "a warning line"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "JOBLOGGER_"))}
    env.pop("PYTHONPATH", None)
    env.update(OTEL_TRACES_EXPORTER="console", OTEL_METRICS_EXPORTER="none", OTEL_LOGS_EXPORTER="console")
    env.update(extra)
    return env


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)


def _bodies(out: str) -> Counter[str]:
    return Counter(body for body in BODY.findall(out) if not body.startswith("Completed in"))


@pytest.fixture
def job(tmp_path: Path) -> Path:
    path = tmp_path / "job.py"
    path.write_text(JOB)
    return path


@pytest.mark.parametrize("logging_auto", ["false", "true"])
def test_opentelemetry_instrument_alone_exports_every_job_log_record_once(job: Path, logging_auto: str):
    """Drop-in: under opentelemetry-instrument, info, milestones, warnings and the summary each reach the SDK once.

    Before: none did (logging auto-instrumentation off), or only the warning (on: the
    `joblogger` logger inherits the root's WARNING).
    """
    env = _env(OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED=logging_auto)
    proc = _run([INSTRUMENT, PYTHON, str(job)], job.parent, env)
    assert proc.returncode == 0, proc.stderr
    assert _bodies(proc.stdout) == Counter(BODIES), proc.stdout
    assert len(re.findall(r'"body": "Completed in [^"]*Processed: 5 entities', proc.stdout)) == 1
    assert '"job.snapshot.kind": "run.start"' in proc.stdout  # snapshot spans are on, as with configure()


def test_configure_reusing_the_applications_providers_exports_job_logs(tmp_path: Path):
    """configure() with the app's own SDK providers (logger provider included): job records reach it, once."""
    app = tmp_path / "app.py"
    app.write_text(
        textwrap.dedent("""
        from opentelemetry import _logs, trace
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter, SimpleLogRecordProcessor
        from opentelemetry.sdk.trace import TracerProvider

        logs = LoggerProvider()
        logs.add_log_record_processor(SimpleLogRecordProcessor(ConsoleLogRecordExporter()))
        _logs.set_logger_provider(logs)
        trace.set_tracer_provider(TracerProvider())
        from joblogger import otlp
        assert otlp.configure().reused_existing
    """)
        + JOB
    )
    proc = _run([PYTHON, str(app)], tmp_path, _env())
    assert proc.returncode == 0, proc.stderr
    assert _bodies(proc.stdout) == Counter(BODIES), proc.stdout


def test_configure_leaves_the_applications_logging_alone(tmp_path: Path):
    """configure() changes no logger level (issue #11): with the root at WARNING, info lines stay off the app's console.

    They are exported all the same (checked above and in the live tests).
    """
    app = tmp_path / "app.py"
    app.write_text(
        textwrap.dedent("""
        import logging
        logging.basicConfig(level=logging.WARNING, format="APP %(levelname)s %(message)s")
        from joblogger import otlp
        otlp.configure(endpoint="http://127.0.0.1:9", export_timeout_s=0.2, console=False)
        print("level:", logging.getLogger("joblogger").level)
    """)
        + JOB
    )
    proc = _run([PYTHON, str(app)], tmp_path, _env())
    assert proc.returncode == 0, proc.stderr
    assert "level: 0" in proc.stdout
    assert "APP WARNING a warning line" in proc.stderr
    assert "an info line" not in proc.stderr
    assert "Starting: Scanning" not in proc.stderr


def test_run_around_opentelemetry_instrument(job: Path):
    """`joblogger run -- opentelemetry-instrument python job.py`: both work (terminal view and the SDK pipeline).

    Before, the instrument's sitecustomize shadowed joblogger's: no terminal view.
    """
    proc = _run([*JOBLOGGER, "run", "--plain", "--", INSTRUMENT, PYTHON, str(job)], job.parent, _env())
    assert proc.returncode == 0, proc.stderr
    assert "[MILESTONE] Starting: Scanning" in proc.stderr  # joblogger's terminal view
    assert proc.stderr.count("[MILESTONE] Completed in") == 1  # one view: the launcher drew nothing
    assert _bodies(proc.stdout) == Counter(BODIES), proc.stdout  # the SDK's log pipeline, once each
    assert '"telemetry.auto.version"' in proc.stdout  # auto-instrumentation configured the SDK
    assert "provider: TracerProvider" in proc.stdout


def test_opentelemetry_instrument_around_run(job: Path):
    """`opentelemetry-instrument joblogger run -- python job.py`: both work.

    Before, joblogger's sitecustomize shadowed the instrument's: no auto-instrumentation.
    """
    proc = _run([INSTRUMENT, *JOBLOGGER, "run", "--plain", "--", PYTHON, str(job)], job.parent, _env())
    assert proc.returncode == 0, proc.stderr
    assert "[MILESTONE] Starting: Scanning" in proc.stderr
    assert _bodies(proc.stdout) == Counter(BODIES), proc.stdout
    assert '"telemetry.auto.version"' in proc.stdout


def test_run_chains_to_the_applications_own_sitecustomize(job: Path, tmp_path: Path):
    """An application's own sitecustomize still runs under `joblogger run`, and joblogger is configured too."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import sys\nsys.app_sitecustomize_ran = True\n")  # this process only
    ran = "import sys\nprint('app sitecustomize:', getattr(sys, 'app_sitecustomize_ran', False))\n"
    job.write_text(job.read_text() + ran)
    env = _env(PYTHONPATH=str(site))
    proc = _run([*JOBLOGGER, "run", "--plain", "--", PYTHON, str(job)], job.parent, env)
    assert proc.returncode == 0, proc.stderr
    assert "app sitecustomize: True" in proc.stdout
    assert "[MILESTONE] Completed in" in proc.stderr


def test_run_configures_the_command_only_not_its_children(job: Path, tmp_path: Path):
    """The command's own Python children are not configured by `joblogger run` (no second view, no providers)."""
    child = tmp_path / "child.py"
    report = "import os\nprint('child bootstrap:', 'JOBLOGGER_BOOTSTRAP' in os.environ)\n"
    child.write_text(JOB.replace("run-1", "run-child") + report)
    job.write_text(
        job.read_text()
        + textwrap.dedent(f"""
        import subprocess, sys
        subprocess.run([sys.executable, {str(child)!r}], check=True)
    """)
    )
    proc = _run([*JOBLOGGER, "run", "--plain", "--", PYTHON, str(job)], job.parent, _env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("[MILESTONE] Completed in") == 1, proc.stderr  # the command's view only
    assert proc.stdout.count("provider: TracerProvider") == 1
    assert "provider: ProxyTracerProvider" in proc.stdout  # the child: nothing configured
    assert "child bootstrap: False" in proc.stdout


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_run_delivers_a_process_group_signal_once(tmp_path: Path, signum: int):
    """Ctrl-C in a terminal (or systemd's control-group kill) reaches the command once, not twice.

    Before, the wrapper process got it too and forwarded it: the command saw it twice.
    """
    job = tmp_path / "job.py"
    job.write_text(
        textwrap.dedent("""
        import signal, sys, time
        seen = []
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, lambda signum, frame: seen.append(signum))
        print("ready", flush=True)
        deadline = time.monotonic() + 30  # for the first signal, however late a loaded machine sends it
        while not seen and time.monotonic() < deadline:
            time.sleep(0.05)
        deadline = time.monotonic() + 1.5  # a second delivery lands here
        while time.monotonic() < deadline:
            time.sleep(0.05)
        print("signals:", len(seen), flush=True)
    """)
    )
    proc = subprocess.Popen(
        [*JOBLOGGER, "run", "--no-console", "--", PYTHON, str(job)],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    os.killpg(proc.pid, signum)  # what the terminal (or systemd) does: every process of the group
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "signals: 1" in out, (out, err)
