"""Run a command as a child process: its output passed through and read as lines, signals forwarded.

The mechanics of ``joblogger run`` for commands that are not Python (see
:mod:`joblogger._command` for the run around it, docs/commands.md for the rules):

- The child writes to two pipes of 1 MiB (Linux: ``F_SETPIPE_SZ``; 64 KiB elsewhere).
  One reader thread per pipe reads what is there (up to 1 MiB at a time),
  writes it unchanged to the supervisor's own stdout / stderr, and hands it to
  the main thread. Nothing else happens on the reader threads, so the child
  waits only for the supervisor's own output (as it would without
  ``joblogger run``), never for telemetry.
- Handed-over output is bounded (:data:`MAX_QUEUED_BYTES`): when the main thread
  falls behind, chunks are not queued but counted (bytes and lines not logged);
  after the command exited, the supervisor logs what is queued for at most
  :data:`LOG_DRAIN_S` and counts the rest.
- The main thread turns the chunks into lines (:class:`joblogger._streamlines.LineSplitter`)
  and calls ``on_line(stream, raw, cut)`` for each.
- Signals the supervisor gets (SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2)
  go to the child's process group, once; see :func:`_own_group`.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import FrameType
from typing import Any, Final

from ._streamlines import LineSplitter

__all__ = ["CANCEL_SIGNALS", "FORWARDED_SIGNALS", "MAX_QUEUED_BYTES", "Supervised", "supervise"]

#: Signals the supervisor passes on to the command.
FORWARDED_SIGNALS: Final = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)
#: Termination requests: a run they end (sent to the supervisor, or killing the command) is a cancellation.
CANCEL_SIGNALS: Final = frozenset((signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT))
#: Output read but not yet turned into log lines, at most (beyond it, output is passed through, not logged).
MAX_QUEUED_BYTES: Final = 8 * 1024 * 1024
#: How long the supervisor keeps reading after the command exited, for output still in the pipes
#: (a background process the command left behind may hold them open for ever).
DRAIN_S: Final = 2.0
#: How long the supervisor keeps logging queued output after the command exited, at most, so a
#: burst of output at the end delays the exit status (what cron and systemd wait for) by that much only.
LOG_DRAIN_S: Final = 10.0
_PIPE_BYTES: Final = 1024 * 1024
_F_SETPIPE_SZ: Final = 1031  # Linux fcntl


class _Queue:
    """Chunks of output handed from the reader threads to the main thread, bounded in bytes."""

    __slots__ = ("_cond", "_items", "_limit", "_size")

    def __init__(self, limit: int) -> None:
        self._items: collections.deque[tuple[_Stream, bytes | None, bool]] = collections.deque()
        self._cond = threading.Condition(threading.Lock())
        self._size = 0
        self._limit = limit

    def offer(self, stream: _Stream, chunk: bytes | None, gap: bool) -> bool:
        """Queue ``chunk`` (None: end of stream, always queued) unless it would exceed the bound."""
        with self._cond:
            size = 0 if chunk is None else len(chunk)
            if chunk is not None and self._size + size > self._limit:
                return False
            self._items.append((stream, chunk, gap))
            self._size += size
            self._cond.notify()
            return True

    def take(self, timeout: float) -> tuple[_Stream, bytes | None, bool] | None:
        with self._cond:
            if not self._items and not self._cond.wait(timeout):
                return None
            if not self._items:
                return None
            item = self._items.popleft()
            if item[1] is not None:
                self._size -= len(item[1])
            return item


class _Stream:
    """One of the command's output pipes: its reader thread and what it could not hand over."""

    __slots__ = ("dropped_bytes", "dropped_lines", "fd", "name", "out_fd", "queue", "splitter", "thread")

    def __init__(self, name: str, fd: int, out_fd: int | None, queue: _Queue, line_limit: int) -> None:
        self.name = name
        self.fd = fd
        self.out_fd = out_fd
        self.queue = queue
        self.splitter = LineSplitter(line_limit)
        self.dropped_bytes = 0
        self.dropped_lines = 0
        self.thread = threading.Thread(target=self._read, name=f"joblogger-{name}", daemon=True)

    def _read(self) -> None:
        gap = False
        try:
            while True:
                try:
                    chunk = os.read(self.fd, _PIPE_BYTES)
                except OSError:
                    break
                if not chunk:
                    break
                if self.out_fd is not None and not self._pass_through(chunk):
                    break  # our own output is gone: stop reading, so the command sees a broken pipe too
                if self.queue.offer(self, chunk, gap):
                    gap = False
                else:
                    gap = True
                    self.dropped_bytes += len(chunk)
                    self.dropped_lines += chunk.count(b"\n")
        finally:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.queue.offer(self, None, gap)

    def _pass_through(self, chunk: bytes) -> bool:
        view = memoryview(chunk)
        out_fd = self.out_fd
        assert out_fd is not None
        while view:
            try:
                written = os.write(out_fd, view)
            except BrokenPipeError:
                self.out_fd = None
                return False
            except OSError:  # closed or unusable: keep logging, stop passing through
                self.out_fd = None
                return True
            view = view[written:]
        return True


class Supervised:
    """What :func:`supervise` observed: the child's status and what could not be logged."""

    __slots__ = ("dropped_bytes", "dropped_lines", "pid", "returncode", "signalled")

    def __init__(self) -> None:
        #: Popen's: the exit status, or -N when a signal N killed the command.
        self.returncode: int | None = None
        self.pid: int | None = None
        #: The first termination signal the supervisor got (and forwarded), if any.
        self.signalled: int | None = None
        self.dropped_bytes = 0
        self.dropped_lines = 0


def _own_group() -> bool:
    """Whether the command gets a process group of its own.

    Yes, unless the supervisor is in a terminal's foreground (interactive use): then
    the command stays in the terminal's foreground group, so it can read the
    terminal, and the keys that signal the group (Ctrl-C, Ctrl-\\) already reach it.
    With a group of its own, only the supervisor gets a signal sent to its group
    (``kill -TERM -PGID``, a terminal's Ctrl-C in the background) and forwards it:
    the command gets each signal once.
    """
    try:
        return not (os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp())
    except OSError:
        return True


def _pipe() -> tuple[int, int]:
    read_fd, write_fd = os.pipe()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            import fcntl

            fcntl.fcntl(write_fd, _F_SETPIPE_SZ, _PIPE_BYTES)
    return read_fd, write_fd


def supervise(
    argv: Sequence[str],
    env: Mapping[str, str],
    on_start: Callable[[int], None],
    on_line: Callable[[str, bytes, int], None],
    *,
    stdout_fd: int | None = 1,
    stderr_fd: int | None = 2,
    line_limit: int,
    queue_bytes: int = MAX_QUEUED_BYTES,
    clock: Callable[[], float] = time.monotonic,
) -> Supervised:
    """Run ``argv`` to its end, calling ``on_line(stream, raw, cut)`` for each output line.

    Raises ``OSError`` if the command cannot start.

    ``stdout_fd`` / ``stderr_fd``: where the output is passed through (None: nowhere);
    ``queue_bytes``: output read but not yet logged, at most (beyond it, not logged).
    Signal forwarding is installed only when called from the main thread.
    """
    result = Supervised()
    own_group = _own_group()
    proc: list[subprocess.Popen[bytes]] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        if signum in CANCEL_SIGNALS and result.signalled is None:
            result.signalled = signum
        if not proc or proc[0].returncode is not None:
            return  # not started yet: forwarded right after the start
        with contextlib.suppress(OSError):
            if own_group:
                os.killpg(proc[0].pid, signum)
            elif signum not in (signal.SIGINT, signal.SIGQUIT):  # the terminal sent those to the group
                os.kill(proc[0].pid, signum)

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in FORWARDED_SIGNALS:
            previous[signum] = signal.signal(signum, forward)
    out_r, out_w = _pipe()
    err_r, err_w = _pipe()
    try:
        try:
            options: dict[str, Any] = {"process_group": 0} if own_group and sys.version_info >= (3, 11) else {}
            if own_group and not options:
                options["preexec_fn"] = os.setpgrp  # Python 3.10
            proc.append(subprocess.Popen(list(argv), env=dict(env), stdout=out_w, stderr=err_w, **options))
        finally:
            os.close(out_w)
            os.close(err_w)
        child = proc[0]
        result.pid = child.pid
        queue = _Queue(queue_bytes)
        streams = [
            _Stream("stdout", out_r, stdout_fd, queue, line_limit),
            _Stream("stderr", err_r, stderr_fd, queue, line_limit),
        ]
        out_r = err_r = -1
        for stream in streams:
            stream.thread.start()
        if result.signalled is not None:  # arrived while starting
            forward(result.signalled, None)
        on_start(child.pid)
        late = _pump(child, streams, queue, on_line, clock)
        result.returncode = child.wait()
        result.dropped_lines += late
        for stream in streams:
            result.dropped_bytes += stream.dropped_bytes
            result.dropped_lines += stream.dropped_lines
        return result
    finally:
        for fd in (out_r, err_r):
            if fd >= 0:
                os.close(fd)
        for number, handler in previous.items():
            signal.signal(number, handler)


_BATCH: Final = 512


def _pump(
    child: subprocess.Popen[bytes],
    streams: list[_Stream],
    queue: _Queue,
    on_line: Callable[[str, bytes, int], None],
    clock: Callable[[], float],
) -> int:
    """Turn queued output into lines until both pipes ended; return the lines left unlogged.

    After the command exited: at most :data:`DRAIN_S` waiting for the pipes to close,
    at most :data:`LOG_DRAIN_S` logging what is queued (the rest is counted, not logged).
    """
    open_streams = len(streams)
    exited_at: float | None = None
    next_poll = clock()

    def overdue() -> bool:
        """Whether the command exited more than LOG_DRAIN_S ago (polled at most every 50 ms)."""
        nonlocal exited_at, next_poll
        now = clock()
        if exited_at is None and now >= next_poll:
            next_poll = now + 0.05
            if child.poll() is not None:
                exited_at = now
        return exited_at is not None and now - exited_at > LOG_DRAIN_S

    late = 0
    while open_streams:
        if overdue():
            while (item := queue.take(0)) is not None:
                late += 0 if item[1] is None else item[1].count(b"\n")
            return late
        item = queue.take(0.05)
        if item is None:
            if exited_at is not None and clock() - exited_at > DRAIN_S:
                return late  # all that was read is logged; the pipes are held open by some other process
            continue
        stream, chunk, gap = item
        splitter = stream.splitter
        if gap:
            splitter.gap()
        if chunk is None:
            open_streams -= 1
            last = splitter.flush()
            if last is not None:
                on_line(stream.name, *last)
            continue
        name = stream.name
        lines = splitter.feed(chunk)
        for start in range(0, len(lines), _BATCH):
            if start and overdue():
                late += len(lines) - start
                break
            for raw, cut in lines[start : start + _BATCH]:
                on_line(name, raw, cut)
    return late
