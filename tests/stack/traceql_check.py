"""A minimal structural check of TraceQL: not a parser, and not a substitute for Tempo.

It tokenises a query and checks what can be checked without Tempo: balanced braces and
parentheses, closed string literals, every attribute in a known scope (``resource.``,
``span.``, or unscoped ``.``) or a known intrinsic, known operators, ``select(...)``
listing attributes only, and a spanset filter before any pipeline stage. Tempo's own
parser (pkg/traceql) is the full check; it is Go code under AGPL that this project does
not build (docs/stack.md, "Tempo users").

Example:
    >>> problems('{resource.service.name = "a" && span.job.result != nil} | select(span.job.run.id)')
    []
    >>> problems('{span.job.result = "failure"')
    ['unbalanced braces/parentheses']
    >>> problems('{foo.bar = 1}')
    ["unknown attribute or intrinsic 'foo.bar'"]
    >>> attributes('{resource.service.name = "a"} | select(span.error.type)')
    ['resource.service.name', 'span.error.type']
"""

from __future__ import annotations

import re

#: Span and trace intrinsics of TraceQL in Tempo 2.x (docs: "Construct a TraceQL query").
INTRINSICS = frozenset(
    {
        "name", "status", "statusMessage", "duration", "kind", "rootName", "rootServiceName",
        "traceDuration", "nestedSetLeft", "nestedSetRight", "nestedSetParent",
        "span:name", "span:status", "span:statusMessage", "span:duration", "span:kind", "span:id",
        "span:parentID", "trace:rootName", "trace:rootService", "trace:duration", "trace:id",
        "event:name", "event:timeSinceStart", "link:traceID", "link:spanID", "instrumentation:name",
        "instrumentation:version",
    }
)  # fmt: skip
SCOPES = ("resource.", "span.", "event.", "link.", "instrumentation.", ".")
KEYWORDS = frozenset(
    {
        "nil", "true", "false", "error", "ok", "unset", "select", "by", "count", "avg", "min", "max", "sum",
        "server", "client", "producer", "consumer", "internal", "unspecified", "coalesce",
    }
)  # fmt: skip
OPERATORS = frozenset({"=", "!=", "=~", "!~", ">", ">=", "<", "<=", "&&", "||", "!", "|", ">>", "<<", "~", "&>>"})

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<number>\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h)?)
      | (?P<ident>[A-Za-z_.][\w.:\-]*)
      | (?P<op>&>>|=~|!~|!=|>=|<=|&&|\|\||>>|<<|[=<>!|~])
      | (?P<punct>[{}(),])
      | (?P<bad>\S)
    )""",
    re.VERBOSE,
)


def tokens(query: str) -> list[tuple[str, str]]:
    """(kind, text) pairs; an unclosed string or unknown character yields kind ``bad``."""
    out = []
    pos = 0
    query = query.rstrip()
    while pos < len(query):
        match = _TOKEN.match(query, pos)
        assert match is not None and match.lastgroup is not None  # `bad` matches any character
        out.append((match.lastgroup, match.group(match.lastgroup)))
        pos = match.end()
    return out


def _is_attribute(name: str) -> bool:
    return name in INTRINSICS or any(name.startswith(s) and len(name) > len(s) for s in SCOPES)


def attributes(query: str) -> list[str]:
    """Attribute and intrinsic references in the query, in order."""
    return [text for kind, text in tokens(query) if kind == "ident" and text not in KEYWORDS]


def problems(query: str) -> list[str]:
    """What is structurally wrong with ``query`` (empty when nothing is found)."""
    toks = tokens(query)
    found: list[str] = []
    depth: list[str] = []
    pairs = {"}": "{", ")": "("}
    for kind, text in toks:
        if kind == "bad":
            found.append(f"unexpected {text!r}")
        elif kind == "punct" and text in "{(":
            depth.append(text)
        elif kind == "punct" and text in "})":
            if not depth or depth.pop() != pairs[text]:
                found.append("unbalanced braces/parentheses")
        elif kind == "op" and text not in OPERATORS:
            found.append(f"unknown operator {text!r}")
        elif kind == "ident" and text not in KEYWORDS and not _is_attribute(text):
            found.append(f"unknown attribute or intrinsic {text!r}")
    if depth:
        found.append("unbalanced braces/parentheses")
    if not toks or toks[0] != ("punct", "{"):
        found.append("a query starts with a spanset filter {...}")
    for i, (kind, text) in enumerate(toks):
        if kind == "ident" and text == "select":
            j = toks.index(("punct", ")"), i) if ("punct", ")") in toks[i:] else len(toks)
            args = [t for k, t in toks[i + 2 : j] if k == "ident"]
            if toks[i + 1 : i + 2] != [("punct", "(")] or not args or not all(map(_is_attribute, args)):
                found.append("select(...) takes attributes")
    return found
