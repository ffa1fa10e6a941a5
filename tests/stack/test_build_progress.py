"""A cold build says what it builds and how far it is (scripts/stack.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from repo_scripts import stack_script

stack = stack_script()


def test_a_long_build_step_prints_heartbeats_with_packages_compiled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(stack, "HEARTBEAT_S", 0.4)
    script = (
        "import time\n"
        "for p in ['fmt', 'example.com/a/b', 'example.com/c']:\n"
        "    print(p, flush=True)\n"
        "    time.sleep(0.6)\n"
    )
    stack._run(
        [sys.executable, "-c", script], cwd=tmp_path, env={}, log=tmp_path / "b.log", what="building demo", packages=4
    )
    lines = [line for line in capsys.readouterr().err.splitlines() if "building demo" in line]
    assert len(lines) >= 2
    assert lines[0].startswith("[stack] building demo: 0m0")
    assert "of at most 4 packages compiled" in lines[-1]
    counts = [int(line.split(", ")[1].split(" ")[0]) for line in lines]
    assert counts == sorted(counts) and counts[-1] >= 2


def test_a_failing_build_step_raises_with_the_log_tail(tmp_path: Path) -> None:
    with pytest.raises(stack.StackError, match="boom"):
        stack._run(
            [sys.executable, "-c", "print('boom'); raise SystemExit(3)"], cwd=tmp_path, env={}, log=tmp_path / "l"
        )


def test_packages_are_counted_with_go_list(tmp_path: Path) -> None:
    """The stack's builds need `go` (every build machine of this project has it)."""
    (tmp_path / "go.mod").write_text("module example.com/m\n\ngo 1.21\n")
    (tmp_path / "main.go").write_text('package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("x") }\n')
    env = stack._go_env(dict(os.environ))
    n = stack._count_packages(stack._go(env), ["."], cwd=tmp_path, env=env, log=tmp_path / "g.log", what="building m")
    assert n is not None and n > 5  # fmt, its standard-library dependencies, and the main package
