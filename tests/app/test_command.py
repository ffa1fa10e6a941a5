"""`joblogger run` for commands that are not Python: real child processes under the supervisor.

In-process tests run the supervisor (joblogger._command.run_command) in this
process with in-memory providers and real children (`sh -c`, `seq`, `head`);
the CLI tests run `joblogger run` itself as a process, for exit codes, exact
output and signals.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pty
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from joblogger import _supervise, semconv
from joblogger._command import is_python_command, run_command, start_command_run
from joblogger._streamlines import MAX_LINE_BYTES
from joblogger.testing import Capture, capture

JOBLOGGER = [sys.executable, "-m", "joblogger"]


@pytest.fixture
def cap() -> Iterator[Capture]:
    with capture() as c:
        yield c


class Outputs:
    """Files the supervisor passes the command's stdout and stderr through to."""

    def __init__(self, tmp_path: Path) -> None:
        self.out_path, self.err_path = tmp_path / "out", tmp_path / "err"
        self.out = os.open(self.out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        self.err = os.open(self.err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)

    def close(self) -> tuple[bytes, bytes]:
        os.close(self.out)
        os.close(self.err)
        return self.out_path.read_bytes(), self.err_path.read_bytes()


def supervise(cap: Capture, argv: list[str], tmp_path: Path, **options: Any) -> tuple[int, bytes, bytes]:
    """Run ``argv`` under the supervisor as job ``cmd``; its status and what it passed through."""
    outputs = Outputs(tmp_path)
    job = start_command_run(argv, job_name="cmd", run_id="run-1", make_job=cap.job_logger, **options.pop("job", {}))
    status = run_command(argv, job, stdout_fd=outputs.out, stderr_fd=outputs.err, **options)
    out, err = outputs.close()
    return status, out, err


def run_attrs(cap: Capture) -> dict[str, Any]:
    return dict(cap.span("cmd").attributes or {})


def lines(cap: Capture) -> list[tuple[str, str | None, Any]]:
    """The output-line events of the run: (text, level, stream)."""
    return [(e.name, e.level, e.attributes.get(semconv.LOG_IOSTREAM)) for e in cap.events() if e.span == "cmd"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "JOBLOGGER_"))}
    env.update(OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none", OTEL_LOGS_EXPORTER="none")
    env.update(extra)
    return env


# --- which path a command takes ---------------------------------------------------------------


def test_python_programs_and_python_scripts_are_python_commands(tmp_path: Path):
    """Interpreters by name or symlink and scripts with a python #! line run in-process; the rest is supervised."""
    script = tmp_path / "tool"
    script.write_text("#!/usr/bin/env -S python3 -u\nprint(1)\n")
    script.chmod(0o755)
    venv_script = tmp_path / "celery"
    venv_script.write_text(f"#!{sys.executable}\nprint(1)\n")
    venv_script.chmod(0o755)
    shell = tmp_path / "backup.sh"
    shell.write_text("#!/bin/sh\necho hi\n")
    shell.chmod(0o755)
    link = tmp_path / "interp"
    link.symlink_to(sys.executable)
    path = f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}"
    assert is_python_command(["python3", "-c", "1"])
    assert is_python_command(["/usr/bin/python3.12", "job.py"])
    assert is_python_command(["pypy3"])
    assert is_python_command([sys.executable, "job.py"])
    assert is_python_command(["tool"], path=path)
    assert is_python_command([str(venv_script)])
    assert is_python_command([str(link)])
    assert not is_python_command([str(shell)])
    assert not is_python_command(["sh", "-c", "python3 job.py"])
    assert not is_python_command(["no-such-program-xyz"], path=path)
    assert not is_python_command([])


# --- lines, levels and pass-through ------------------------------------------------------------


SCRIPT = textwrap.dedent(r"""
    echo "starting dump"
    echo "a warning on stderr" >&2
    echo "INFO: connected" >&2
    echo "ERROR: table t is locked"
    printf '\033[32mgreen\033[0m and colour\n'
    printf 'level=warn msg="slow"\n'
    echo
    printf 'no newline at the end' >&2
""")


def test_output_lines_become_records_of_the_run_and_pass_through_unchanged(cap: Capture, tmp_path: Path):
    """Each line of both streams is a record of the run at its level; the output itself is unchanged."""
    status, out, err = supervise(cap, ["sh", "-c", SCRIPT], tmp_path)
    assert status == 0
    assert out == b'starting dump\nERROR: table t is locked\n\x1b[32mgreen\x1b[0m and colour\nlevel=warn msg="slow"\n\n'
    assert err == b"a warning on stderr\nINFO: connected\nno newline at the end"
    got = sorted(lines(cap)[:-1])  # the last is the summary line
    assert got == sorted(
        [
            ("starting dump", "info", "stdout"),
            ("ERROR: table t is locked", "error", "stdout"),
            ("green and colour", "info", "stdout"),
            ('level=warn msg="slow"', "warning", "stdout"),
            ("a warning on stderr", "warning", "stderr"),
            ("INFO: connected", "info", "stderr"),
            ("no newline at the end", "warning", "stderr"),
        ]
    )
    attrs = run_attrs(cap)
    assert attrs[semconv.JOB_RESULT] == "success"
    assert attrs[semconv.PROCESS_EXIT_CODE] == 0
    assert attrs[semconv.PROCESS_EXECUTABLE_NAME] == "sh"
    assert isinstance(attrs[semconv.PROCESS_PID], int)
    assert attrs["job.logs.error"] == 1 and attrs["job.logs.warning"] == 3


def test_the_command_gets_the_run_and_the_trace_in_its_environment(cap: Capture, tmp_path: Path):
    """JOBLOGGER_RUN_ID, JOBLOGGER_JOB_NAME and a W3C TRACEPARENT naming the run span reach the command."""
    status, out, _ = supervise(cap, ["sh", "-c", 'echo "$JOBLOGGER_RUN_ID $JOBLOGGER_JOB_NAME $TRACEPARENT"'], tmp_path)
    assert status == 0
    run_id, name, traceparent = out.decode().split()
    span = cap.span("cmd")
    assert (run_id, name) == ("run-1", "cmd")
    assert (
        traceparent
        == f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-{int(span.context.trace_flags):02x}"
    )


def test_a_parent_carrier_in_the_supervisors_environment_is_the_supervisors_run_for_the_command(
    cap: Capture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Under JOBLOGGER_PARENT the supervisor's run is the child; the command's runs are its children, not siblings."""
    with cap.job_logger("p-1", "parent") as parent:
        carrier = parent.child_carrier()
    monkeypatch.setenv(semconv.ENV_PARENT, carrier)
    status, out, _ = supervise(cap, ["sh", "-c", 'echo "$JOBLOGGER_PARENT"'], tmp_path)
    assert status == 0
    assert cap.span("cmd").attributes[semconv.JOB_PARENT_RUN_ID] == "p-1"  # type: ignore[index]
    passed = json.loads(out.decode())
    assert (passed["run_id"], passed["job"]) == ("run-1", "cmd")


# --- exit status -> result ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "status", "result", "description"),
    [
        ("exit 3", 3, "failure", "exited with status 3"),
        ("kill -TERM $$", 143, "cancellation", "killed by SIGTERM"),
        ("kill -INT $$", 130, "cancellation", "killed by SIGINT"),
        ("kill -KILL $$", 137, "failure", "killed by SIGKILL"),
        ("kill -SEGV $$", 139, "failure", "killed by SIGSEGV"),
    ],
)
def test_exit_status_is_the_runs_result(  # noqa: PLR0917 - parametrized
    cap: Capture, tmp_path: Path, script: str, status: int, result: str, description: str
):
    """Non-zero: failure with process.exit.code; killed by a termination signal: cancellation; by a crash: failure."""
    got, _, _ = supervise(cap, ["sh", "-c", script], tmp_path)
    assert got == status
    attrs = run_attrs(cap)
    assert attrs[semconv.JOB_RESULT] == result
    assert attrs[semconv.PROCESS_EXIT_CODE] == status
    assert attrs[semconv.ERROR_TYPE] == "joblogger.CommandExit"
    assert cap.span("cmd").status.description == f"joblogger.CommandExit: {description}"


def test_a_command_that_cannot_start_is_a_failed_run(cap: Capture, tmp_path: Path, capfd: pytest.CaptureFixture[str]):
    """Not found: status 127 (as a shell), a failed run that says why; not executable: 126."""
    assert supervise(cap, ["no-such-program-xyz"], tmp_path)[0] == 127
    attrs = run_attrs(cap)
    assert attrs[semconv.JOB_RESULT] == "failure" and attrs[semconv.PROCESS_EXIT_CODE] == 127
    assert "cannot start 'no-such-program-xyz'" in capfd.readouterr().err
    plain = tmp_path / "not-executable"
    plain.write_text("echo hi\n")
    with capture() as cap2:
        assert supervise(cap2, [str(plain)], tmp_path)[0] == 126


# --- awkward output ------------------------------------------------------------------------------


def test_binary_output_is_passed_through_byte_for_byte(cap: Capture, tmp_path: Path):
    """2 MB of random bytes: passed through unchanged; the records made of it are valid UTF-8 text."""
    status, out, _ = supervise(cap, ["sh", "-c", "head -c 2000000 /dev/urandom; echo; echo after"], tmp_path)
    assert status == 0
    assert len(out) == 2_000_000 + 1 + 6 and out.endswith(b"\nafter\n")
    texts = [text for text, _, stream in lines(cap) if stream == "stdout"]
    assert texts
    for text in texts:
        text.encode("utf-8")  # invalid bytes were replaced, so every record can be exported
        assert len(text) <= MAX_LINE_BYTES + 40


def test_an_endless_line_is_cut_per_record_not_buffered(cap: Capture, tmp_path: Path):
    """A 20 MB line: passed through whole; its record keeps the first 8 KB and says how much was cut."""
    script = "head -c 20000000 /dev/zero | tr '\\0' x; echo; echo after"
    status, out, _ = supervise(cap, ["sh", "-c", script], tmp_path)
    assert status == 0 and len(out) == 20_000_000 + 1 + 6
    texts = [text for text, _, stream in lines(cap) if stream == "stdout"]
    assert texts[0].startswith("xxxx") and texts[0].endswith(f"[{20_000_000 - MAX_LINE_BYTES:,} bytes truncated]")
    assert len(texts[0]) <= MAX_LINE_BYTES + 40
    assert texts[1] == "after"


def test_a_command_that_closes_stdout_early_is_still_followed_to_its_end(cap: Capture, tmp_path: Path):
    """Closing stdout is not the end: stderr lines and the exit status still count."""
    status, out, _ = supervise(cap, ["sh", "-c", "echo first; exec 1>&-; sleep 0.3; echo late >&2; exit 4"], tmp_path)
    assert status == 4 and out == b"first\n"
    assert ("late", "warning", "stderr") in lines(cap)
    assert run_attrs(cap)[semconv.PROCESS_EXIT_CODE] == 4


def test_a_command_that_never_prints(cap: Capture, tmp_path: Path):
    """No output: a successful run with only its summary record."""
    status, out, err = supervise(cap, ["sleep", "0.2"], tmp_path)
    assert (status, out, err) == (0, b"", b"")
    assert [level for _, level, _ in lines(cap)] == ["milestone"]
    assert cap.span("cmd").end_time - cap.span("cmd").start_time >= 200_000_000


def test_a_background_process_holding_the_pipes_does_not_hold_the_run(cap: Capture, tmp_path: Path):
    """The run ends about 2 s after the command exits even if a process it left keeps its output open."""
    started = time.monotonic()
    status, _, _ = supervise(cap, ["sh", "-c", "sleep 30 & echo started; exit 0"], tmp_path)
    assert status == 0 and time.monotonic() - started < 10
    assert ("started", "info", "stdout") in lines(cap)


def test_100k_lines_are_bounded_by_the_log_limits(cap: Capture, tmp_path: Path):
    """100,000 lines: all passed through, counted as info logs, but only the rate limit's worth become records."""
    started = time.monotonic()
    status, out, _ = supervise(cap, ["seq", "1", "100000"], tmp_path)
    elapsed = time.monotonic() - started
    assert status == 0
    expected = subprocess.check_output(["seq", "1", "100000"])
    assert hashlib.sha256(out).hexdigest() == hashlib.sha256(expected).hexdigest()
    attrs = run_attrs(cap)
    assert attrs["job.logs.info"] == 100_000  # every line counted
    assert len(lines(cap)) < 300  # the span keeps a bounded number of events
    summary = cap.events("milestone")[-1].name
    assert "Logs suppressed:" in summary
    assert elapsed < 60, elapsed


def test_warning_and_error_lines_are_rate_limited_too(cap: Capture, tmp_path: Path, caplog: pytest.LogCaptureFixture):
    """stderr floods (warnings) are limited like info lines; what was not logged is reported once."""
    caplog.set_level(logging.WARNING, "joblogger")
    status, _, err = supervise(cap, ["sh", "-c", "seq 1 5000 >&2"], tmp_path)
    assert status == 0 and err.count(b"\n") == 5000
    records = [r.getMessage() for r in caplog.records if r.name == "joblogger"]
    assert 200 <= len(records) < 600, len(records)
    note = [r for r in caplog.records if r.getMessage().startswith("Output lines not logged")]
    assert len(note) == 1 and note[0].rateLimited > 4000  # type: ignore[attr-defined]


def test_a_slow_supervisor_never_blocks_the_command(cap: Capture, tmp_path: Path):
    """With every record slow to log (1 ms) the command still writes 3 MB at full speed; unlogged lines are counted."""
    slow = logging.Handler()
    slow.emit = lambda record: time.sleep(0.001)  # type: ignore[method-assign]
    pylog = logging.getLogger("joblogger")
    level = pylog.level
    pylog.addHandler(slow)
    pylog.setLevel(logging.INFO)
    script = "s=$(date +%s%N); seq 1 400000; e=$(date +%s%N); echo elapsed_ms=$(( (e - s) / 1000000 )) >&2"
    try:
        started = time.monotonic()
        status, out, err = supervise(
            cap, ["sh", "-c", script], tmp_path, job={"log_rate_limits": {}}, line_rate_limit=None, queue_bytes=16_384
        )
        total = time.monotonic() - started
    finally:
        pylog.removeHandler(slow)
        pylog.setLevel(level)
    assert status == 0 and out.count(b"\n") == 400_000
    child_ms = int(err.decode().split("elapsed_ms=")[1])
    note = next(e for e in cap.events("warning") if e.name.startswith("Output lines not logged"))
    assert note.attributes["fellBehind"] > 300_000
    # 400,000 records at 1 ms each would take 400 s: the command did not wait for them.
    assert child_ms < 10_000, (child_ms, total)


def test_the_run_ends_soon_after_the_command_even_with_a_backlog(
    cap: Capture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A backlog of queued lines (records at 1 ms each) delays the end by LOG_DRAIN_S at most; the rest is counted."""
    monkeypatch.setattr(_supervise, "LOG_DRAIN_S", 1.0)
    slow = logging.Handler()
    slow.emit = lambda record: time.sleep(0.001)  # type: ignore[method-assign]
    pylog = logging.getLogger("joblogger")
    level = pylog.level
    pylog.addHandler(slow)
    pylog.setLevel(logging.INFO)
    try:
        started = time.monotonic()
        status, out, _ = supervise(cap, ["seq", "1", "100000"], tmp_path, job={"log_rate_limits": {}})
        elapsed = time.monotonic() - started
    finally:
        pylog.removeHandler(slow)
        pylog.setLevel(level)
    assert status == 0 and out.count(b"\n") == 100_000
    assert elapsed < 8, elapsed  # logging all 100,000 would take 100 s
    note = next(e for e in cap.events("warning") if e.name.startswith("Output lines not logged"))
    assert note.attributes["fellBehind"] > 50_000
    assert run_attrs(cap)["job.logs.info"] + note.attributes["fellBehind"] >= 99_000


# --- the command line: exact output, exit codes, signals ----------------------------------------


def test_run_passes_output_and_exit_status_through_exactly(tmp_path: Path):
    """`joblogger run -- sh -c ...` prints exactly what the command printed (cron mails the same) and its status."""
    proc = subprocess.run(
        [*JOBLOGGER, "run", "--job", "cli-job", "--", "sh", "-c", "echo out; echo 'WARN: err' >&2; exit 5"],
        env=_env(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (5, b"out\n", b"WARN: err\n")
    quiet = subprocess.run([*JOBLOGGER, "run", "--", "true"], env=_env(), capture_output=True, timeout=60, check=False)
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, b"", b"")


# --- a Python program whose interpreter lacks joblogger -------------------------------------------


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ directory of a virtualenv without joblogger (as a system python3 is when joblogger is in a venv)."""
    home = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(home)], check=True, timeout=120)
    return home / "bin"


#: Counts its own starts (one line per start in the file named by argv[1]), prints what it sees, exits 3.
BARE_JOB = textwrap.dedent("""
    import os, sys
    with open(sys.argv[1], "a") as starts:
        starts.write("started\\n")
    print("pid", os.getpid(), flush=True)
    print("env", sorted(k for k in os.environ if k.startswith("JOBLOGGER_")), os.environ.get("PYTHONPATH"))
    print("Loading rows from the old export")
    sys.exit(3)
""")


def _bare_env(bare_python: Path) -> dict[str, str]:
    env = _env(OTEL_TRACES_EXPORTER="console", PATH=f"{bare_python}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("PYTHONPATH", None)
    return env


def _joblogger_run(args: list[str], env: dict[str, str]) -> tuple[int, int, str, str]:
    """``joblogger run ARGS`` to its end: its pid, exit status, stdout and stderr."""
    proc = subprocess.Popen(
        [*JOBLOGGER, "run", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    out, err = proc.communicate(timeout=120)
    return proc.pid, proc.returncode, out, err


@pytest.mark.parametrize("how", ["python3 on PATH", "#! script"])
def test_a_python_program_whose_interpreter_lacks_joblogger_is_supervised_as_one_run(
    tmp_path: Path, bare_python: Path, how: str
):
    """`joblogger run --job X -- python3 job.py` with a python3 without joblogger: one supervised run, one warning.

    Before, the program ran unwatched: "could not configure telemetry" on stderr and no run anywhere.
    """
    job, starts = tmp_path / "job.py", tmp_path / "starts"
    job.write_text(f"#!{bare_python / 'python3'}\n{BARE_JOB}")
    job.chmod(0o755)
    command = ["python3", str(job)] if how == "python3 on PATH" else [str(job)]
    pid, status, out, err = _joblogger_run(
        ["--job", "legacy-export", "--run-id", "run-7", "--", *command, str(starts)], _bare_env(bare_python)
    )
    assert status == 3, err
    assert starts.read_text() == "started\n"  # the program ran once
    warnings = err.splitlines()
    assert len(warnings) == 1, err
    python = bare_python / "python3"
    assert warnings[0].startswith(f"joblogger run: {python} cannot import joblogger[otlp] (ModuleNotFoundError")
    assert "supervising it as one run" in warnings[0] and "-m pip install 'joblogger[otlp]'" in warnings[0]
    assert f"pid {pid}\n" not in out  # a child of the supervisor, not the process joblogger run became
    assert "env ['JOBLOGGER_JOB_NAME', 'JOBLOGGER_RUN_ID'] None\n" in out  # the run's; no bootstrap left
    assert '"name": "legacy-export",' in out  # the run span, named by --job
    assert '"job.run.id": "run-7"' in out
    assert '"job.result": "failure"' in out
    assert '"process.exit.code": 3' in out
    assert out.count('"name": "Loading rows from the old export"') == 1  # the output line, a record of the run
    assert out.count("cannot import joblogger") == 1  # the warning, a record of the run too


def test_a_python_program_whose_interpreter_has_joblogger_still_runs_in_process(tmp_path: Path, bare_python: Path):
    """With joblogger in the interpreter, `joblogger run` becomes the program; one that makes no runs reports none."""
    job, starts = tmp_path / "job.py", tmp_path / "starts"
    job.write_text(BARE_JOB)
    pid, status, out, err = _joblogger_run(
        ["--job", "ignored", "--", sys.executable, str(job), str(starts)], _bare_env(bare_python)
    )
    assert status == 3, err
    assert starts.read_text() == "started\n"
    assert out == f"pid {pid}\nenv [] None\nLoading rows from the old export\n"  # exec'd, bootstrap gone
    assert err == ""  # no warning, no run of joblogger run's own


def test_an_interpreter_with_joblogger_but_without_the_sdk_is_supervised_too(tmp_path: Path, bare_python: Path):
    """joblogger without its otlp extra in the program's interpreter: supervised as one run, not unwatched."""
    site = tmp_path / "site"
    site.mkdir()
    # The application's sitecustomize (run by the bootstrap first) hides the SDK in the bootstrapped process only.
    (site / "sitecustomize.py").write_text(
        textwrap.dedent("""
        import os, sys
        class NoSdk:
            def find_spec(self, name, path=None, target=None):
                if name.startswith("opentelemetry.sdk") and os.environ.get("JOBLOGGER_BOOTSTRAP") == "1":
                    raise ModuleNotFoundError(f"No module named {name!r}")
        sys.meta_path.insert(0, NoSdk())
    """)
    )
    job, starts = tmp_path / "job.py", tmp_path / "starts"
    job.write_text(BARE_JOB)
    env = _bare_env(bare_python)
    env["PYTHONPATH"] = str(site)
    _, status, out, err = _joblogger_run(["--job", "no-sdk", "--", sys.executable, str(job), str(starts)], env)
    assert status == 3, err
    assert starts.read_text() == "started\n"
    assert err.count("\n") == 1 and "cannot import joblogger[otlp] (ModuleNotFoundError" in err
    assert "opentelemetry.sdk" in err
    assert '"name": "no-sdk",' in out and '"process.exit.code": 3' in out


TRAP = textwrap.dedent("""
    n=0
    trap 'n=$((n+1))' TERM INT
    echo ready
    i=0
    while [ $n -eq 0 ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done  # up to 30 s for the first signal
    i=0
    while [ $i -lt 30 ]; do sleep 0.05; i=$((i+1)); done  # 1.5 s more: a second delivery lands here
    echo "signals: $n"
    exit 7
""")


@pytest.mark.parametrize("to_group", [False, True])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signals_to_the_supervisor_reach_the_command_once(tmp_path: Path, signum: int, to_group: bool):
    """SIGTERM/SIGINT to the supervisor (or its whole process group) reach the command once; the run is cancelled.

    The supervisor then exits with the command's own status.
    """
    proc = subprocess.Popen(
        [*JOBLOGGER, "run", "--job", "trapper", "--", "sh", "-c", TRAP],
        env=_env(OTEL_TRACES_EXPORTER="console"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    if to_group:
        os.killpg(proc.pid, signum)
    else:
        os.kill(proc.pid, signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 7, err
    assert "signals: 1" in out, (out, err)
    assert '"job.result": "cancellation"' in out
    assert '"process.exit.code": 7' in out


def test_a_command_killed_through_the_supervisor_exits_128_plus_n(tmp_path: Path):
    """A command that does not trap SIGTERM dies of it: the supervisor exits 143, as the command would have."""
    proc = subprocess.Popen(
        [*JOBLOGGER, "run", "--", "sh", "-c", "echo ready; exec sleep 30"],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 143


def test_supervisor_memory_stays_bounded_with_huge_output(tmp_path: Path):
    """200k lines plus 100 MB without a newline: the supervisor's peak memory grows by well under 64 MB."""

    def peak_kib(script: str) -> int:
        proc = subprocess.Popen(
            [*JOBLOGGER, "run", "--", "sh", "-c", script],
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        assert proc.returncode == 0
        return int(usage.ru_maxrss)

    baseline = peak_kib("true")
    heavy = peak_kib("seq 1 200000; head -c 100000000 /dev/zero")
    assert heavy - baseline < 64 * 1024, (baseline, heavy)


INTERACTIVE = textwrap.dedent("""
    n=0
    trap 'n=$((n+1))' INT
    echo ready
    read line
    echo "got:$line"
    i=0
    while [ $n -eq 0 ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done  # up to 30 s for the Ctrl-C
    i=0
    while [ $i -lt 30 ]; do sleep 0.05; i=$((i+1)); done  # 1.5 s more: a second delivery lands here
    echo "signals:$n"
""")


def _read_until(fd: int, needle: bytes, seen: bytearray, timeout: float = 30.0) -> None:
    """Read ``fd`` into ``seen`` until ``needle`` shows, the output ends or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while needle not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:
                break
            if not data:
                break
            seen += data


def test_in_a_terminal_the_command_reads_it_and_ctrl_c_reaches_it_once():
    """In a terminal's foreground the command can read the terminal, and Ctrl-C reaches it once (not forwarded again).

    With a process group of its own, `read` would stop the command (SIGTTIN) and the run would hang.
    """
    env = _env()
    pid, leader = pty.fork()
    if pid == 0:  # the child: a session with the pty as controlling terminal, in its foreground
        os.execvpe(sys.executable, [*JOBLOGGER, "run", "--", "sh", "-c", INTERACTIVE], env)
    seen = bytearray()
    status = None
    try:
        _read_until(leader, b"ready", seen)
        os.write(leader, b"hello\n")
        _read_until(leader, b"got:hello", seen, timeout=10)
        assert b"got:hello" in seen, bytes(seen)
        time.sleep(0.2)
        os.write(leader, b"\x03")  # Ctrl-C: SIGINT to the terminal's foreground process group
        _read_until(leader, b"\x00never", seen)  # to the end of the output (EIO once the session is gone)
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(leader)
        if status is None:  # failed half-way: do not leave the supervisor behind
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    assert b"signals:1" in seen, bytes(seen)
    assert os.waitstatus_to_exitcode(status) == 0
