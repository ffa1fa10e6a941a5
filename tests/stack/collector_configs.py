"""The collector's merge of several ``--config`` files, for the tests of the stack's overlays."""

from __future__ import annotations

import copy
from typing import Any


def merge_configs(base: Any, overlay: Any) -> Any:
    """The collector's merge of a second --config: maps merge recursively, anything else is replaced."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        out = dict(base)
        for key, value in overlay.items():
            out[key] = merge_configs(base.get(key), value)
        return out
    return copy.deepcopy(overlay)
