"""A command's output as log lines (joblogger._streamlines): splitting, cleaning, levels; property-tested."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from joblogger import semconv
from joblogger._streamlines import LineSplitter, clean, line_level


def _split_all(chunks: list[bytes], limit: int) -> list[tuple[bytes, int]]:
    splitter = LineSplitter(limit)
    out = [line for chunk in chunks for line in splitter.feed(chunk)]
    last = splitter.flush()
    return out + ([last] if last is not None else [])


@given(st.lists(st.binary(max_size=64), max_size=20), st.integers(1, 16))
def test_splitting_in_any_chunks_gives_the_lines_cut_to_the_limit(chunks: list[bytes], limit: int):
    """However the output is chunked, the lines are the stream's lines, cut to `limit` bytes with the cut counted."""
    data = b"".join(chunks)
    expected = data.split(b"\n")
    if expected[-1] == b"":
        expected.pop()  # a final newline ends the last line; it does not start another
    assert _split_all(chunks, limit) == [(line[:limit], max(0, len(line) - limit)) for line in expected]


def test_a_gap_drops_the_line_it_cut():
    """After lost output, the partial line before it and the rest of the line after it are both dropped."""
    splitter = LineSplitter(100)
    assert splitter.feed(b"one\ntw") == [(b"one", 0)]
    splitter.gap()
    assert splitter.feed(b"o-rest\nthree\nfo") == [(b"three", 0)]
    assert splitter.flush() == (b"fo", 0)


@given(st.binary(max_size=300))
def test_clean_is_total_and_gives_exportable_single_line_text(raw: bytes):
    """Any bytes give UTF-8-encodable text without line breaks or control characters other than tab."""
    text = clean(raw)
    text.encode("utf-8")
    assert not any(ch in text for ch in "\n\r\x00\x1b\x7f")


@given(st.text(max_size=300), st.sampled_from([semconv.LEVEL_INFO, semconv.LEVEL_WARNING]))
def test_line_level_is_total(text: str, default: str):
    """Any text gets a joblogger level (never milestone) and keeps its text, but for a systemd prefix."""
    level, rest = line_level(text, default)
    assert level in (semconv.LEVEL_DEBUG, semconv.LEVEL_INFO, semconv.LEVEL_WARNING, semconv.LEVEL_ERROR)
    assert rest == text or (text.startswith("<") and text.endswith(rest))


@pytest.mark.parametrize(
    ("line", "level"),
    [
        ("ERROR: disk full", "error"),
        ("error: could not connect", "error"),
        ("[warn] slow", "warning"),
        ("WARNING:root:deprecated", "warning"),
        ("2024/01/02 15:04:05 FATAL boom", "error"),
        ("2024-01-02T15:04:05Z DEBUG detail", "debug"),
        ('{"time":"x","level":"error","msg":"y"}', "error"),
        ("time=x level=info msg=ok", "info"),
        ("<4>careful", "warning"),
        ("Info: connected", "info"),
        ("Error rate is 0", "default"),
        ("Errors: 0", "default"),
        ("the error was handled", "default"),
        ("INFORMATION follows", "default"),
        ("", "default"),
    ],
)
def test_levels_a_line_states(line: str, level: str):
    """Prefixes, brackets, upper case, logfmt, JSON and systemd prefixes set the level; prose does not."""
    expected = "warning" if level == "default" else level
    assert line_level(line, "warning")[0] == expected
