"""A command's output as log lines: bounded line splitting, cleaning and the level of each line.

Pure functions and one small stateful splitter, no I/O: ``joblogger run`` (see
:mod:`joblogger._command`) feeds them what it reads from a command's stdout and
stderr. The rules are documented in docs/commands.md.

- **Lines** end at ``\\n``. A line is kept up to :data:`MAX_LINE_BYTES` bytes;
  the rest of it is skipped (never buffered) and counted, so a command that
  writes one endless line costs a fixed amount of memory.
- **Text**: UTF-8 with invalid bytes replaced (``U+FFFD``), a trailing ``\\r``
  dropped, and for a line redrawn with ``\\r`` (a progress bar) only its last
  state kept; ANSI colour/cursor sequences removed, other control characters
  replaced; blank lines are not logged.
- **Level**: a level the line states itself wins (see :func:`line_level`), else
  the stream's (stdout: info, stderr: warning).
"""

from __future__ import annotations

import re
from typing import Final

from . import _sanitize, semconv

__all__ = ["MAX_LINE_BYTES", "LineSplitter", "clean", "line_level"]

#: Bytes of one line kept for its log record: the record's message limit, less room for the truncation note.
MAX_LINE_BYTES: Final = _sanitize.MAX_MESSAGE_CHARS - 64

_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

_NAMES: Final = {
    "trace": semconv.LEVEL_DEBUG,
    "debug": semconv.LEVEL_DEBUG,
    "dbg": semconv.LEVEL_DEBUG,
    "info": semconv.LEVEL_INFO,
    "notice": semconv.LEVEL_INFO,
    "warn": semconv.LEVEL_WARNING,
    "warning": semconv.LEVEL_WARNING,
    "err": semconv.LEVEL_ERROR,
    "error": semconv.LEVEL_ERROR,
    "crit": semconv.LEVEL_ERROR,
    "critical": semconv.LEVEL_ERROR,
    "fatal": semconv.LEVEL_ERROR,
    "panic": semconv.LEVEL_ERROR,
    "alert": semconv.LEVEL_ERROR,
    "emerg": semconv.LEVEL_ERROR,
}
_WORD = "|".join(sorted(_NAMES, key=len, reverse=True))
#: systemd / sd-daemon prefix ``<0>`` .. ``<7>`` (syslog priorities), removed from the text as journald does.
_SD_PREFIX = re.compile(r"<([0-7])>")
_SD_LEVELS: Final = (
    (semconv.LEVEL_ERROR,) * 4 + (semconv.LEVEL_WARNING,) + (semconv.LEVEL_INFO,) * 2 + (semconv.LEVEL_DEBUG,)
)
#: ``level=warn`` (logfmt: Go's slog, logrus) or ``"level":"warn"`` / ``"severity":"ERROR"`` (JSON loggers).
_STRUCTURED = re.compile(rf'(?:\blevel=|"(?:level|severity)"\s*:\s*)"?({_WORD})\b', re.IGNORECASE)
#: A timestamp-like word before the level (``2024/01/02``, ``15:04:05.123``, ``2024-01-02T15:04:05Z``).
_STAMP = re.compile(r"[\d:./+TZ,-]*\d[\d:./+TZ,-]*")
#: Characters of a line searched for a structured level.
_HEAD: Final = 256


def _word_level(word: str) -> str | None:
    """The level a leading word states: any case in brackets or before a colon, upper case alone."""
    if word[0] in "[<(" and word[-1] in "]>)":
        return _NAMES.get(word[1:-1].lower())
    name, colon, _ = word.partition(":")
    if colon:
        return _NAMES.get(name.lower()) if name else None
    return _NAMES.get(word.lower()) if word.isupper() else None


def line_level(text: str, default: str) -> tuple[str, str]:
    """The level a command's output line states, else ``default``; and the text to log.

    In order: a systemd prefix ``<N>`` (removed from the text); a structured
    ``level=...`` / ``"level": "..."`` / ``"severity": "..."`` field in the first
    256 characters; the first word after at most two timestamp-like words, if it
    is a level name in brackets (``[warn]``), before a colon (``Error:``,
    ``WARNING:root:...``) or in upper case (``INFO``). Names: trace/debug -> debug;
    info/notice -> info; warn/warning -> warning;
    err/error/crit/critical/fatal/panic/alert/emerg -> error.

    Example:
        >>> line_level("ERROR: disk full", "info")
        ('error', 'ERROR: disk full')
        >>> line_level("2024/01/02 15:04:05 [warn] slow query", "info")[0]
        'warning'
        >>> line_level('time=... level=INFO msg="dumped"', "warning")[0]
        'info'
        >>> line_level("<3>cannot connect", "info")
        ('error', 'cannot connect')
        >>> line_level("Errors found: 0", "info")[0], line_level("error rate is fine", "warning")[0]
        ('info', 'warning')
    """
    if text[:1] == "<":
        match = _SD_PREFIX.match(text)
        if match is not None:
            return _SD_LEVELS[int(match.group(1))], text[match.end() :]
    words = text.split(None, 3)
    for index, word in enumerate(words[:3]):
        if index < 2 and word[0].isdigit() and _STAMP.fullmatch(word):
            continue
        level = _word_level(word)
        if level is not None:
            return level, text
        break
    head = text[:_HEAD]
    if "level" in head or "severity" in head or "LEVEL" in head or "SEVERITY" in head:
        match = _STRUCTURED.search(head)
        if match is not None:
            return _NAMES[match.group(1).lower()], text
    return default, text


def clean(raw: bytes) -> str:
    """One line of output as log text: decoded, last ``\\r`` state, no escape or control characters.

    Example:
        >>> clean(b"\\x1b[31mred\\x1b[0m \\xff\\r\\n")
        'red \\ufffd'
        >>> clean(b"10%\\r50%\\r100%")
        '100%'
    """
    text = raw.decode("utf-8", "replace").rstrip("\r\n")
    if "\r" in text:
        text = next((part for part in reversed(text.split("\r")) if part.strip()), "")
    if "\x1b" in text:
        text = _ANSI.sub("", text)
    if not text.isprintable():
        text = _CONTROL.sub("\ufffd", text)
    return text


class LineSplitter:
    """Splits a byte stream into lines, keeping at most ``limit`` bytes of each (the rest is counted, not kept).

    Example:
        >>> s = LineSplitter(limit=4)
        >>> s.feed(b"ab\\ncdefgh"), s.feed(b"ij\\nk"), s.flush()
        ([(b'ab', 0)], [(b'cdef', 4)], (b'k', 0))
    """

    __slots__ = ("_cut", "_limit", "_partial", "_skip")

    def __init__(self, limit: int = MAX_LINE_BYTES) -> None:
        self._limit = max(1, int(limit))
        self._partial = bytearray()
        self._cut = 0
        #: after a gap (output not read), the rest of the current line belongs to a lost line.
        self._skip = False

    def feed(self, chunk: bytes) -> list[tuple[bytes, int]]:
        """The lines ``chunk`` completes, each as (kept bytes, bytes cut off)."""
        parts = chunk.split(b"\n")
        tail = parts.pop()
        out: list[tuple[bytes, int]] = []
        if parts:
            head = parts[0]
            if self._skip:
                self._skip = False
            elif self._partial or self._cut:
                out.append(self._join(head))
            else:
                out.append((head[: self._limit], max(0, len(head) - self._limit)))
            limit = self._limit
            for line in parts[1:]:
                if len(line) > limit:
                    out.append((line[:limit], len(line) - limit))
                else:
                    out.append((line, 0))
        if tail and not self._skip:
            self._append(tail)
        return out

    def gap(self) -> None:
        """Output was lost here: drop the line in progress and the start of the next chunk up to its newline."""
        self._partial.clear()
        self._cut = 0
        self._skip = True

    def flush(self) -> tuple[bytes, int] | None:
        """The last line if the stream ended without a newline."""
        if not (self._partial or self._cut) or self._skip:
            return None
        line = (bytes(self._partial), self._cut)
        self._partial.clear()
        self._cut = 0
        return line

    def _append(self, data: bytes) -> None:
        room = self._limit - len(self._partial)
        if room > 0:
            self._partial += data[:room]
        self._cut += max(0, len(data) - max(room, 0))

    def _join(self, head: bytes) -> tuple[bytes, int]:
        self._append(head)
        line = (bytes(self._partial), self._cut)
        self._partial.clear()
        self._cut = 0
        return line
