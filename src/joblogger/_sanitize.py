"""Coercion of user input into legal, bounded telemetry values.

Run-time calls never raise into the job: bad values are coerced or the call is
ignored, and the caller hears about it once per kind through the ``joblogger``
logger (see :class:`Warner`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import numbers
import operator
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry.util.types import AttributeValue

from . import _callsite, _fork
from ._redact import (
    REDACTED,
    VALUE_FIELD,
    is_secret,
    named_secret,
    redact_text,
    secret_pair,
)

_log = logging.getLogger("joblogger")

#: Longest string kept in a span attribute, log field or event name.
MAX_VALUE_CHARS = 4_096
#: Longest message (event name / log body) kept.
MAX_MESSAGE_CHARS = 8_192
#: Longest outcome key, stage or job name used as a metric label value.
MAX_LABEL_CHARS = 100
#: Most context entries kept per log call.
MAX_CONTEXT_ITEMS = 64
#: Largest integer an OTLP attribute or data point can carry (int64).
MAX_INT = 2**63 - 1
#: Nesting depth of context values kept before the rest is elided.
MAX_DEPTH = 16

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_SPACES = re.compile(r"\s+")
#: Mappings and sets with more entries than this are serialised in iteration order, not sorted.
_SORT_LIMIT = 1_024


#: Called with each joblogger warning record after stdlib logging had it (``_logexport`` exports them
#: to OpenTelemetry like job records); ``to_stdlib`` says whether the ``joblogger`` logger was enabled.
WARNING_SINKS: list[Callable[[logging.LogRecord, bool], None]] = []


#: Guards the lazy creation of a Warner's thread-local queue.
_LOCAL_LOCK = threading.Lock()


def _new_local_lock() -> None:
    """In a forked child: another thread of the parent may have held the lock at the fork."""
    global _LOCAL_LOCK
    _LOCAL_LOCK = threading.Lock()


_fork.register(_new_local_lock)


class Warner:
    """Emits each kind of warning at most once per owner (one job run).

    Inside ``with warn.deferred():`` warnings are queued and emitted when the
    block exits, so code holding a lock never calls logging handlers (which
    may call back into joblogger).
    """

    __slots__ = ("_local", "_prefix", "_seen")

    def __init__(self, prefix: str | Callable[[], str]) -> None:
        #: the text before each warning, or what makes it (called at the first warning: most runs have none).
        self._prefix = prefix
        self._seen: set[str] = set()
        #: per-thread queue of ``deferred()``, made at its first use (most runs never defer a warning).
        self._local: threading.local | None = None

    def __call__(self, kind: str, message: str, *args: object) -> None:
        """Log ``message`` as a warning unless ``kind`` was already reported."""
        if kind in self._seen:
            return
        self._seen.add(kind)
        local = self._local
        queue = None if local is None else getattr(local, "queue", None)
        if queue is not None:
            queue.append((kind, message, args))
        else:
            self._emit(kind, message, args)

    def _emit(self, kind: str, message: str, args: tuple[object, ...]) -> None:
        # The prefix (job name, run id) is an argument, never part of the format string.
        prefix = self._prefix
        if not isinstance(prefix, str):
            prefix = self._prefix = prefix()
        path, line, func = _callsite.caller()
        record = _log.makeRecord(
            _log.name, logging.WARNING, path, line, "%s" + message, (prefix, *args), None, func,
            {"joblogger.warning": kind},
        )  # fmt: skip
        to_stdlib = _log.isEnabledFor(logging.WARNING)
        if to_stdlib:
            _log.handle(record)
        for sink in WARNING_SINKS:
            sink(record, to_stdlib)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Queue warnings raised in the block; emit them after it."""
        local = self._local
        if local is None:
            with _LOCAL_LOCK:  # two threads deferring at once for the first time make one
                local = self._local
                if local is None:
                    local = self._local = threading.local()
        if getattr(local, "queue", None) is not None:
            yield
            return
        queue: list[tuple[str, str, tuple[object, ...]]] = []
        local.queue = queue
        try:
            yield
        finally:
            local.queue = None
            for kind, message, args in queue:
                self._emit(kind, message, args)

    def rename(self, prefix: str | Callable[[], str]) -> None:
        """Change the prefix of later warnings (the kinds already reported stay reported)."""
        self._prefix = prefix

    @property
    def kinds(self) -> frozenset[str]:
        """Kinds of warning reported so far."""
        return frozenset(self._seen)


def utf8(text: str) -> str:
    """Replace what UTF-8 cannot encode (lone surrogates), which would make the OTLP exporter fail a batch."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def clamp_int(value: int) -> int:
    """Clamp an integer to the int64 range OTLP can carry."""
    return max(-MAX_INT - 1, min(MAX_INT, value))


def truncate(text: str, limit: int) -> str:
    """Cut ``text`` to ``limit`` characters, saying how much was dropped; the result is UTF-8 encodable."""
    if len(text) <= limit:
        return utf8(text)
    note = f"... [{len(text) - limit:,} chars truncated]"
    return utf8(text[: max(0, limit - len(note))] + note)


def as_text(value: object, what: str, warn: Warner, *, limit: int = MAX_MESSAGE_CHARS) -> str:
    """Coerce a message, stage name or similar to a bounded string."""
    if not isinstance(value, str):
        warn(f"{what}-type", "%s should be a string, got %s; using str()", what, type(value).__name__)
        try:
            value = str(value)
        except Exception:  # noqa: BLE001 - a broken __str__ must not break the job
            value = f"<unprintable {type(value).__name__}>"
    if len(value) > limit:
        warn(f"{what}-long", "%s longer than %d chars was truncated", what, limit)
    return truncate(value, limit)


def as_label(value: str) -> str:
    """Make a metric label value: one line, trimmed, bounded."""
    if value.isprintable() and value.isascii() and value.strip() == value and "  " not in value:
        return value[:MAX_LABEL_CHARS]  # the common case, without the two regex passes
    value = _SPACES.sub(" ", _CONTROL.sub(" ", value)).strip()
    return value[:MAX_LABEL_CHARS]


_WORDS = re.compile(r"[^\W_]+")


def outcome_key(value: str) -> str:
    """Normalise an outcome key: lower-case letters and digits, words joined by ``_``, bounded.

    Keys become span attribute names (``job.outcomes.<key>``), which OpenTelemetry wants
    lower-case snake_case, and a dot would open a namespace; so ``"Rows Merged"``,
    ``"rows-merged"`` and ``"rows.merged"`` are all ``rows_merged``. Unicode letters stay.

    Example:
        >>> outcome_key("Rows Merged"), outcome_key(" ERRORS "), outcome_key("api.calls-v2")
        ('rows_merged', 'errors', 'api_calls_v2')
    """
    return "_".join(_WORDS.findall(value.lower()))[:MAX_LABEL_CHARS].rstrip("_")


def as_flag(value: object, what: str, warn: Warner) -> bool | None:
    """``bool(value)``, or None (the caller's default) with one warning when its truth value raises (an array)."""
    try:
        return bool(value)
    except Exception:  # noqa: BLE001 - numpy arrays, pandas objects, anything with a raising __bool__
        warn(f"{what}-type", "%s should be True or False, got %s; using the default", what, type(value).__name__)
        return None


def as_count(value: object, what: str, warn: Warner, *, allow_zero: bool = True) -> int | None:
    """Coerce a count to a non-negative int, or None when it cannot be used.

    Accepts ints and integer-likes (``__index__``, e.g. numpy integers),
    integral floats and other real numbers (``Decimal``, ``Fraction``; rounded,
    with a warning when fractional), numeric strings and bools (as 0/1, with a
    warning). Rejects negatives, NaN, infinities and anything non-numeric.
    """
    if type(value) is int:  # the common case first
        number: Any = value
    elif isinstance(value, bool):
        warn(f"{what}-bool", "%s should be a number, got a bool; counting it as %d", what, int(value))
        number = int(value)
    elif isinstance(value, int):
        number = int(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            warn(f"{what}-nonfinite", "%s must be finite, got %r; call ignored", what, value)
            return None
        if not value.is_integer():
            warn(f"{what}-fraction", "%s should be a whole number, got %r; rounding", what, value)
        number = round(value)
    elif isinstance(value, str):
        try:
            number = int(value.strip())
        except ValueError:
            try:
                as_float = float(value)
            except ValueError:
                warn(f"{what}-type", "%s should be a number, got %r; call ignored", what, value[:40])
                return None
            return as_count(as_float, what, warn, allow_zero=allow_zero)
        warn(f"{what}-str", "%s should be a number, got the string %r; converting", what, value[:40])
    elif hasattr(type(value), "__index__"):  # integer-likes such as numpy.int64
        try:
            number = operator.index(value)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001
            warn(f"{what}-type", "%s should be a number, got %s; call ignored", what, type(value).__name__)
            return None
    elif isinstance(value, numbers.Number):  # Decimal, Fraction, numpy floats
        try:
            as_float = float(value)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - complex and friends
            warn(f"{what}-type", "%s should be a number, got %s; call ignored", what, type(value).__name__)
            return None
        return as_count(as_float, what, warn, allow_zero=allow_zero)
    else:
        warn(f"{what}-type", "%s should be a number, got %s; call ignored", what, type(value).__name__)
        return None
    if number < 0:
        warn(f"{what}-negative", "%s must not be negative, got %d; call ignored", what, number)
        return None
    if number == 0 and not allow_zero:
        return None
    if number > 2**63 - 1:
        warn(f"{what}-huge", "%s %d exceeds 2**63-1; capped", what, number)
        number = 2**63 - 1
    return int(number)


def _json_default(value: object) -> object:
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return sorted(map(str, value))
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    return str(value)


def _items(value: Mapping[Any, Any]) -> Iterable[tuple[Any, Any]]:
    """A mapping's items, sorted by key text when it is small enough to sort cheaply."""
    if len(value) > _SORT_LIMIT:
        return value.items()
    pairs = [(_key_text(key), item) for key, item in value.items()]
    pairs.sort(key=lambda pair: pair[0])
    return pairs


_encode_string = json.encoder.encode_basestring  # the C encoder json.dumps(..., ensure_ascii=False) uses
_REDACTED_JSON = _encode_string(REDACTED)


def _key_text(key: object) -> str:
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, (bool, int, float)):
        return json.dumps(key)
    try:
        return str(key)
    except Exception:  # noqa: BLE001 - a broken __str__ on a key
        return f"<unprintable {type(key).__name__}>"


def _nonfinite_text(value: float) -> str:
    """``NaN``, ``Infinity`` or ``-Infinity``: JSON's spelling (and the protobuf JSON mapping's) of a non-finite float.

    Attribute values use it too: Jaeger's query API cannot encode a non-finite double,
    and answers HTTP 500 for every search that would return a span or event carrying one.
    """
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _scalar_json(value: object) -> str | None:
    """JSON text of a scalar (as ``json.dumps`` writes it, non-ASCII kept), or None for anything else."""
    if isinstance(value, str):
        return _encode_string(redact_text(value[: MAX_VALUE_CHARS + 1]))
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return float.__repr__(value)
        return _nonfinite_text(value)
    if isinstance(value, (bytes, bytearray)):
        return _scalar_json(bytes(value[: MAX_VALUE_CHARS + 1]).decode("utf-8", "replace"))
    return None


def _json_chunks(value: object, secret_keys: tuple[str, ...], depth: int, seen: tuple[int, ...]) -> Iterator[str]:
    """JSON text of ``value``, lazily: the caller stops reading once it has enough.

    Secret-looking keys (and the values of secret-named pairs) are redacted at any
    depth, credential-looking strings are redacted, cycles and nesting deeper than
    :data:`MAX_DEPTH` are cut, and no string longer than the cap is encoded whole.
    """
    scalar = _scalar_json(value)
    if scalar is not None:
        yield scalar
        return
    if not isinstance(value, (Mapping, list, tuple, set, frozenset)):
        try:
            text = str(_json_default(value))
        except Exception:  # noqa: BLE001 - a broken __str__
            text = f"<unprintable {type(value).__name__}>"
        yield _encode_string(redact_text(text[: MAX_VALUE_CHARS + 1]))
        return
    if id(value) in seen:
        yield '"<recursive>"'
        return
    if depth >= MAX_DEPTH:
        yield '"<nested too deep>"'
        return
    inner = (*seen, id(value))
    if isinstance(value, Mapping):
        hides_value = named_secret(value, secret_keys)
        yield "{"
        for index, (key, item) in enumerate(_items(value)):
            name = _key_text(key)
            yield (", " if index else "") + _encode_string(name) + ": "
            if is_secret(name, secret_keys) or (hides_value and name == VALUE_FIELD):
                yield _REDACTED_JSON
            else:
                scalar = _scalar_json(item)
                if scalar is not None:
                    yield scalar
                else:
                    yield from _json_chunks(item, secret_keys, depth + 1, inner)
        yield "}"
        return
    if isinstance(value, (set, frozenset)):
        texts = map(_key_text, value)
        items: Iterable[object] = sorted(texts) if len(value) <= _SORT_LIMIT else texts
    else:
        items = value
    yield "["
    for index, item in enumerate(items):
        if index:
            yield ", "
        scalar = _scalar_json(item)
        if scalar is not None:
            yield scalar
        elif secret_pair(item, secret_keys):
            yield from _json_chunks([item[0], REDACTED], secret_keys, depth + 1, inner)  # type: ignore[index]
        else:
            yield from _json_chunks(item, secret_keys, depth + 1, inner)
    yield "]"


def bounded_json(value: object, secret_keys: tuple[str, ...] = (), limit: int = MAX_VALUE_CHARS) -> str:
    """JSON text of ``value`` cut to ``limit`` characters; the work done is bounded by ``limit``, not by ``value``."""
    parts: list[str] = []
    size = 0
    for chunk in _json_chunks(value, secret_keys, 0, ()):
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            note = "... [truncated]"
            return utf8("".join(parts)[: max(0, limit - len(note))] + note)
    return utf8("".join(parts))


def attribute_value(value: object, secret_keys: tuple[str, ...] = ()) -> AttributeValue:
    """Coerce any value to a legal OpenTelemetry attribute value.

    Primitives pass through (strings are capped, ints beyond int64 become
    strings, NaN and infinities become ``NaN``, ``Infinity``, ``-Infinity``);
    bytes are decoded; homogeneous lists of primitives stay lists (at most
    :data:`MAX_CONTEXT_ITEMS` items); anything else becomes a JSON string of
    at most :data:`MAX_VALUE_CHARS` characters, built lazily so a huge value
    costs no more than the cap. Keys matching ``secret_keys`` are redacted
    at any depth, and so are credential-looking strings (private-key PEM
    blocks, bearer tokens). Strings are always UTF-8 encodable. Never raises.
    """
    if isinstance(value, (bool, int, float)):
        if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
            return str(value)
        if isinstance(value, float) and not math.isfinite(value):
            return _nonfinite_text(value)
        return value
    if isinstance(value, str):
        return redact_text(truncate(value, MAX_VALUE_CHARS))
    if isinstance(value, (bytes, bytearray)):
        return redact_text(truncate(bytes(value[: MAX_VALUE_CHARS + 1]).decode("utf-8", "replace"), MAX_VALUE_CHARS))
    if isinstance(value, (list, tuple)) and value:
        head = value[:MAX_CONTEXT_ITEMS]
        first = type(head[0])
        if first in (str, int, float, bool) and all(type(v) is first for v in head):
            if first is str:
                return [redact_text(truncate(v, MAX_VALUE_CHARS)) for v in head]
            if first is bool or all(-(2**63) <= v < 2**63 if first is int else math.isfinite(v) for v in head):
                return list(head)
    if value is not None and not isinstance(value, (Mapping, list, tuple, set, frozenset)):
        try:  # a single object: its text, not a quoted JSON string
            return attribute_value(str(_json_default(value)))
        except Exception:  # noqa: BLE001 - a broken __str__
            return f"<unprintable {type(value).__name__}>"
    try:
        return bounded_json(value, secret_keys)
    except Exception:  # noqa: BLE001 - a broken __str__, items() or __iter__
        try:
            return redact_text(truncate(repr(value), MAX_VALUE_CHARS))
        except Exception:  # noqa: BLE001
            return f"<unprintable {type(value).__name__}>"


def context_attributes(
    context: Mapping[str, object] | None,
    secret_keys: tuple[str, ...],
    warn: Warner,
    what: str = "context",
) -> dict[str, AttributeValue]:
    """Turn a log call's context into attributes: keys as strings, values legal, secrets redacted.

    ``what`` names the argument in the warnings (``context``, or ``attributes`` for a run's ``attributes=``).
    """
    if context is None:
        return {}
    if not isinstance(context, Mapping):  # an array's or a Series' truth value raises: no `not context`
        warn(
            f"{what}-type",
            "%s should be a mapping, got %s; kept as one 'context' attribute",
            what,
            type(context).__name__,
        )
        return {"context": attribute_value(context, secret_keys)}
    out: dict[str, AttributeValue] = {}
    for index, (key, value) in enumerate(context.items()):
        if index >= MAX_CONTEXT_ITEMS:
            warn("context-size", "context has more than %d entries; the rest were dropped", MAX_CONTEXT_ITEMS)
            break
        try:
            name = key if isinstance(key, str) else str(key)
        except Exception:  # noqa: BLE001 - a broken __str__ on a key
            name = f"<unprintable {type(key).__name__}>"
        name = truncate(name, MAX_LABEL_CHARS) or "_"
        out[name] = REDACTED if is_secret(name, secret_keys) else attribute_value(value, secret_keys)
    return out
