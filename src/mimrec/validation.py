"""The one validation layer for ids and content fields, shared by the data loader, the
Representation Center and the scoring service.

Each check returns the problem as a short phrase (or None when the value is fine); the caller
wraps it in its own error, naming the file / column / row (:class:`~mimrec.errors.DataError`), the
store (:class:`~mimrec.errors.MimrecError`) or the request field (a 4xx). The same rules hold
everywhere, so an id the loader accepts is one the store and the service accept, and back.

Rules:

* an id (item, user) is a string of 1 to :data:`MAX_ID_CHARS` characters, not blank, with no
  leading or trailing whitespace and no control character (``\\x00``-``\\x1f``, ``\\x7f``-``\\x9f``,
  line / paragraph separators) and no lone surrogate: such characters are cut or mangled by
  Arrow, numpy and terminals, so two different ids could become one;
* a text field is a finite number or a string of at most :data:`MAX_TEXT_CHARS` characters with
  no control character other than tab and newlines; a list value holds at most
  :data:`MAX_TOKENS` such strings;
* an attribute token follows the id rules (it is a vocabulary key);
* an image declares at most :data:`MAX_IMAGE_PIXELS` pixels (checked from its header, before
  it is decoded).
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd

MAX_ID_CHARS = 256
MAX_TEXT_CHARS = 10_000
MAX_TOKENS = 1_000
MAX_IMAGE_PIXELS = 4096 * 4096

# control characters, Unicode line / paragraph separators, lone surrogates
_ID_BAD = r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]"
# the same, less tab, line feed and carriage return (text may span lines)
_TEXT_BAD = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]"
_ID_BAD_RE = re.compile(_ID_BAD)
_TEXT_BAD_RE = re.compile(_TEXT_BAD)
# _TEXT_BAD for Arrow strings (RE2 syntax; valid UTF-8 holds no surrogates)
TEXT_BAD_RE2 = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"


def shown(value: Any, limit: int = 40) -> str:
    """``repr`` of a value cut to about ``limit`` characters (for error messages)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(str(value)):,} characters)"


def id_problem(value: str) -> str | None:
    """What is wrong with an id (already a string), or None."""
    if not value.strip():
        return "an id must not be empty or blank"
    if len(value) > MAX_ID_CHARS:
        return f"an id has at most {MAX_ID_CHARS} characters, got {len(value):,}"
    bad = _ID_BAD_RE.search(value)
    if bad:
        return f"an id must not contain control characters, got {bad.group()!r} in {shown(value)}"
    if value != value.strip():
        return f"an id must not start or end with whitespace, got {shown(value)}"
    return None


def invalid_ids(ids: pd.Series | np.ndarray | list) -> np.ndarray:
    """:func:`id_problem` over many ids (checked once per distinct value): a mask of the bad
    ones. Values are taken as Python strings, never through numpy's fixed-width strings, which
    drop trailing NULs ("1\\x00" would pass as "1")."""
    values = np.asarray(ids, dtype=object).ravel()
    bad = {v for v in pd.unique(values) if id_problem(str(v)) is not None}
    if not bad:
        return np.zeros(len(values), dtype=bool)
    return np.fromiter((v in bad for v in values), dtype=bool, count=len(values))


def text_problem(value: Any) -> str | None:
    """What is wrong with one text-field value (str, number, or list of strings), or None."""
    if isinstance(value, bool):
        return "expected a string, a number or a list of strings, got a boolean"
    if isinstance(value, (int, float)):
        return None if math.isfinite(value) else f"a number must be finite, got {value!r}"
    if isinstance(value, str):
        if len(value) > MAX_TEXT_CHARS:
            return f"a text has at most {MAX_TEXT_CHARS:,} characters, got {len(value):,}"
        bad = _TEXT_BAD_RE.search(value)
        return f"a text must not contain control character {bad.group()!r}" if bad else None
    if isinstance(value, list):
        if len(value) > MAX_TOKENS:
            return f"a list has at most {MAX_TOKENS:,} entries, got {len(value):,}"
        if not all(isinstance(v, str) for v in value):
            return "a list must hold strings only"
        return next((p for p in map(text_problem, value) if p), None)
    return f"expected a string, a number or a list of strings, got {type(value).__name__}"


def tokens_problem(tokens: list[str]) -> str | None:
    """What is wrong with a list of attribute tokens, or None."""
    if len(tokens) > MAX_TOKENS:
        return f"at most {MAX_TOKENS:,} tokens, got {len(tokens):,}"
    for token in tokens:
        problem = id_problem(token)
        if problem:
            return problem.replace("an id", "a token")
    return None


def pixels_problem(width: int, height: int) -> str | None:
    """What is wrong with an image of this declared size, or None."""
    if width < 1 or height < 1:
        return f"an image needs at least one pixel, got {width} x {height}"
    if width * height > MAX_IMAGE_PIXELS:
        return (f"an image has at most {MAX_IMAGE_PIXELS:,} pixels, this one declares "
                f"{width} x {height}")
    return None
