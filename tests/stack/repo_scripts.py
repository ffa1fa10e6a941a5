"""The repository's scripts (``scripts/*.py``, not a package) as modules, loaded once per test session.

Example:
    >>> stack_script().__name__
    'joblogger_stack'
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[2]


def load_script(name: str, path: Path) -> ModuleType:
    """``path`` imported as module ``name`` (the same object for every caller)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look the module up while it executes
    spec.loader.exec_module(module)
    return module


def stack_script() -> ModuleType:
    """scripts/stack.py (the name tests/integration/conftest.py uses too, so both share one module)."""
    return load_script("joblogger_stack", REPO_ROOT / "scripts" / "stack.py")


def tempo_dashboard_script() -> ModuleType:
    """scripts/tempo_dashboard.py."""
    return load_script("joblogger_tempo_dashboard", REPO_ROOT / "scripts" / "tempo_dashboard.py")
