"""examples/tqdm_bridge.py runs as a real process and its run has the numbers its bars counted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_tqdm_example_runs_and_reports_every_bar():
    """The example's bars (drop-in, nested, a patched tqdm.auto bar) add up; each log line is printed once."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["EXAMPLE_DELAY"] = "0"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "tqdm_bridge.py"), "run-example"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["processedTotal"] == 120 + 3 + 1_000  # download (patched), batches (outer bar), upload
    assert (summary["entitiesProcessed"], summary["entitiesTotal"]) == (1_000, 1_000)  # the last phase
    assert summary["outcomeSummary"] == {"warnings": 1}
    lines = proc.stderr.replace("\r", "\n").splitlines()
    expected = [
        "INFO thumbnailer: batch 0 resized",
        "INFO thumbnailer: batch 2 resized",
        "WARNING thumbnailer: 2 thumbnails were already up to date",
        "MILESTONE joblogger: Starting: Downloading originals",
        "MILESTONE joblogger: Starting: Resizing batches",
        "MILESTONE joblogger: Starting: Uploading",
    ]
    for text in expected:
        assert sum(text in line for line in lines) == 1, (text, proc.stderr)
    assert not any("Starting: images" in line for line in lines)  # the inner bar is not a stage
