"""The one place where joblogger reacts to ``os.fork()``.

A forked child starts with a copy of the parent's memory and only the thread
that called ``fork()``. Whatever another thread held at that moment (a lock, a
half-updated registry) stays held or half-updated in the child, and the
parent's runs, counts and queued telemetry are the parent's to report. Each
module that keeps such state registers one hook here; the hooks run in the
child, in registration order, right after the fork and before ``fork()``
returns. A hook must not block (no lock that another thread may have held),
must not export, and must not depend on another hook having run.

Example:
    >>> from joblogger import _fork
    >>> _fork.register(lambda: None)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

__all__ = ["register", "register_around", "register_late"]

_hooks: list[Callable[[], None]] = []


def register(hook: Callable[[], None]) -> None:
    """Run ``hook()`` in every child forked from now on (once per hook)."""
    if hook not in _hooks:
        _hooks.append(hook)


def register_late(hook: Callable[[], None]) -> None:
    """Run ``hook()`` in every child forked from now on, after every fork hook registered so far.

    For what must happen once the SDK's own fork hooks (registered when its
    providers were created) have run.
    """
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=lambda: _run((hook,)))


def register_around(before: Callable[[], None], after_in_parent: Callable[[], None]) -> None:
    """Run ``before()`` in the forking thread just before each fork, ``after_in_parent()`` in the parent after it.

    For state that must be set up across the fork itself (a signal mask the child
    inherits); the child undoes it in one of its hooks.
    """
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(before=lambda: _run((before,)), after_in_parent=lambda: _run((after_in_parent,)))


def _run(hooks: Sequence[Callable[[], None]]) -> None:
    for hook in hooks:
        try:
            hook()
        except Exception as exc:  # noqa: BLE001 - a failing hook must not take the child down
            logging.getLogger("joblogger").warning("joblogger: after-fork hook %s failed: %r", hook.__qualname__, exc)


def _after_fork_in_child() -> None:
    _run(list(_hooks))


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
