"""Redaction: what counts as a secret in a key name or as a credential in a value.

Key names are compared case- and separator-insensitively (``privateKey``,
``private-key``, ``PRIVATE_KEY`` are one name); values are redacted by form
whatever their key: private-key PEM blocks and bearer tokens. Pairs that name
their secret in a field are redacted too: ``["Authorization", "Bearer ..."]``
(header lists) and ``{"name": "Authorization", "value": "..."}`` (HAR headers).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

REDACTED = "[REDACTED]"
#: Context keys containing any of these are redacted. Keys and fragments are compared
#: case- and separator-insensitively (see :func:`secret_fragment`): ``private_key`` also
#: matches ``privateKey``, ``private-key`` and ``PRIVATE.KEY``.
DEFAULT_SECRET_KEYS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "authorization",
    "apikey",
    "cookie",
    "credential",
    "privatekey",
    "session",
)

_SEPARATORS = re.compile(r"[\W_]+")
#: Values that are credentials whatever their key: private-key PEM blocks and bearer tokens.
_CREDENTIAL = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)"
    r"|(?<![A-Za-z0-9])(?i:bearer)\s+[A-Za-z0-9\-._~+/]{8,}=*",
    re.DOTALL,
)
#: Mappings ``{"name": "Authorization", "value": "..."}`` (HAR headers, tag lists) name their secret in a field.
_NAME_FIELDS = ("name", "key", "header")
VALUE_FIELD = "value"


def secret_fragment(key: str) -> str:
    """``key`` lower-cased without separators: ``"X-Api-Key"`` -> ``"xapikey"``."""
    return _SEPARATORS.sub("", key.lower())


@functools.lru_cache(maxsize=4096)
def is_secret(key: str, secret_keys: tuple[str, ...]) -> bool:
    """True when ``key`` looks like it names a secret (fragments as made by :func:`secret_fragment`)."""
    folded = secret_fragment(key)
    return any(fragment in folded for fragment in secret_keys)


def redact_text(text: str) -> str:
    """``text`` with credentials that are obvious from their form (private-key PEM blocks, bearer tokens) redacted."""
    if "-----BEGIN" not in text and "earer" not in text and "EARER" not in text:
        return text
    return _CREDENTIAL.sub(REDACTED, text)


def secret_pair(item: object, secret_keys: tuple[str, ...]) -> bool:
    """True for ``("Authorization", "...")``: a two-item list or tuple whose first item names a secret."""
    return (
        isinstance(item, (list, tuple))
        and len(item) == 2
        and isinstance(item[0], str)
        and is_secret(item[0], secret_keys)
    )


def named_secret(value: Mapping[Any, Any], secret_keys: tuple[str, ...]) -> bool:
    """True for ``{"name": "Authorization", "value": "..."}``."""
    if len(value) > 8 or VALUE_FIELD not in value:
        return False
    for field in _NAME_FIELDS:
        name = value.get(field)
        if isinstance(name, str) and is_secret(name, secret_keys):
            return True
    return False
