"""``@job("match-scores")``: run a function as a job run."""

from __future__ import annotations

import functools
import inspect
import uuid
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, cast

from ._logger import create_job_logger
from ._state import pylog

__all__ = ["job"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _run_id_getter(
    fn: Callable[..., Any], run_id: Callable[..., object] | None, run_id_arg: str | None
) -> Callable[[tuple[Any, ...], dict[str, Any]], object]:
    """Decide once, when decorating, where each call's run id comes from."""
    if run_id is not None:
        make = run_id

        def from_callable(args: tuple[Any, ...], kwargs: dict[str, Any]) -> object:
            try:
                return make(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - never raise into the job
                pylog.warning("joblogger: @job run_id callable failed (%r); using a random run id", exc)
                return uuid.uuid4().hex

        return from_callable
    if run_id_arg is not None:
        signature = inspect.signature(fn)
        if run_id_arg not in signature.parameters:
            raise TypeError(f"@job(run_id_arg={run_id_arg!r}): {fn.__qualname__} has no parameter {run_id_arg!r}")

        def from_argument(args: tuple[Any, ...], kwargs: dict[str, Any]) -> object:
            try:
                value = signature.bind_partial(*args, **kwargs).arguments.get(run_id_arg)
            except TypeError:  # the call does not match the signature: the function itself will say so
                value = None
            return value if value is not None else uuid.uuid4().hex

        return from_argument
    return lambda args, kwargs: uuid.uuid4().hex


def job(
    name: str,
    *,
    run_id: Callable[..., object] | None = None,
    run_id_arg: str | None = None,
    **options: Any,
) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Run every call of the decorated function as a run of job ``name``.

    Works on plain and ``async def`` functions. Each call starts a run (as
    ``with create_job_logger(...)`` / ``async with`` would), which the function
    reaches with :func:`joblogger.current_job`; an exception that escapes the
    function ends the run with its result (``failure``, ``cancellation`` ...)
    and propagates untouched. The run id of a call is, in this order:
    ``run_id(*args, **kwargs)``; the argument named ``run_id_arg``; else a new
    random UUID (``uuid4().hex``).

    Args:
        name: The job name, e.g. ``"match-scores"``.
        run_id: Called with the function's arguments; returns the run id.
        run_id_arg: The name of the function's parameter that holds the run id.
        **options: Passed to :func:`joblogger.create_job_logger` (providers, attributes, ...).

    Raises:
        TypeError: At decoration time, when ``run_id_arg`` is not a parameter of the function,
            or when the decorator is used without a name (``@job`` instead of ``@job("name")``).

    Example:
        >>> from joblogger import current_job, job
        >>> @job("match-scores", run_id_arg="job_run_id")
        ... def score(users, job_run_id=None):
        ...     run = current_job()
        ...     for user in run.track(users, stage="Scoring users"):
        ...         run.add_outcome("updates")
        ...     return run.job_run_id
        >>> score([1, 2, 3], job_run_id="run-7")
        'run-7'
    """

    if not isinstance(name, str):
        raise TypeError('@job needs the job name: @job("match-scores")')

    def decorate(fn: Callable[_P, Any]) -> Callable[_P, Any]:
        get_run_id = _run_id_getter(fn, run_id, run_id_arg)

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: _P.args, **kwargs: _P.kwargs) -> Any:
                async with create_job_logger(get_run_id(args, kwargs), name, **options):
                    return await fn(*args, **kwargs)

            return run_async

        @functools.wraps(fn)
        def run(*args: _P.args, **kwargs: _P.kwargs) -> Any:
            with create_job_logger(get_run_id(args, kwargs), name, **options):
                return fn(*args, **kwargs)

        return run

    return cast("Callable[[Callable[_P, _R]], Callable[_P, _R]]", decorate)
