"""The job-framework extras install what their integrations need to export (docs/integrations.md)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10: mypy's own dependency
    import tomli as tomllib

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
EXTRAS: dict[str, list[str]] = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["optional-dependencies"]
SELF = re.compile(r"joblogger\[([^\]]+)\]")


def _resolved(extra: str, seen: set[str] | None = None) -> set[str]:
    """Distribution names an extra installs, following ``joblogger[...]`` self-references."""
    seen = set() if seen is None else seen
    seen.add(extra)
    names: set[str] = set()
    for requirement in EXTRAS[extra]:
        inner = SELF.fullmatch(requirement.split(";")[0].strip())
        if inner is None:
            names.add(re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower())
            continue
        for name in inner.group(1).split(","):
            if name.strip() not in seen:
                names |= _resolved(name.strip(), seen)
    return names


@pytest.mark.parametrize("framework", ["celery", "rq", "dramatiq", "arq", "apscheduler"])
def test_framework_extra_brings_the_otlp_export(framework: str) -> None:
    """Each integration (or its documented set-up) calls joblogger.otlp.configure(), which needs the SDK."""
    needed = _resolved("otlp")
    assert {"opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http"} <= needed
    missing = needed - _resolved(framework)
    assert not missing, f"pip install 'joblogger[{framework}]' misses {sorted(missing)}"
