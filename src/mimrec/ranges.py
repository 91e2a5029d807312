"""Range checks of numeric config settings, called by each stage config's ``__post_init__``.

A failed check raises ``ValueError`` with one line naming the key, the value and the allowed
range (``ctr.train.lr = -0.1 is out of range: expected a finite number > 0``);
:func:`mimrec.config.from_dict` turns it into a :class:`~mimrec.errors.ConfigError`. Every float
must be finite (NaN and infinity are refused everywhere).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

SEED_MAX = 2**32 - 1  # numpy's legacy seeding takes [0, 2**32)


def _num(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{_num(low)}, {_num(high)}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {_num(low)}"
    if high is not None:
        return f"{'<' if high_open else '<='} {_num(high)}"
    return "(any finite value)"


def check_range(key: str, value: float, low: float | None = None, high: float | None = None, *,
                low_open: bool = False, high_open: bool = False) -> None:
    """Refuse ``value`` outside ``low``..``high`` (closed ends unless ``*_open``), or not finite.

    Args:
        key: the full config key, e.g. ``ctr.train.lr``.
        value: the setting.
        low: the smallest allowed value (None: no lower bound).
        high: the largest allowed value (None: no upper bound).
        low_open: ``low`` itself is not allowed.
        high_open: ``high`` itself is not allowed.
    """
    ok = math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        kind = "an integer" if isinstance(value, int) else "a finite number"
        raise ValueError(f"{key} = {value!r} is out of range: expected {kind} "
                         f"{_interval(low, high, low_open, high_open)}")


def check_each(key: str, values: Sequence[float], low: float | None = None,
               high: float | None = None, *, low_open: bool = False, high_open: bool = False,
               non_empty: bool = False) -> None:
    """:func:`check_range` on every entry of a list setting (``key[i]``); ``non_empty`` also
    refuses an empty list."""
    if non_empty and not values:
        raise ValueError(f"{key} = [] is out of range: expected at least one entry")
    for i, value in enumerate(values):
        check_range(f"{key}[{i}]", value, low, high, low_open=low_open, high_open=high_open)


def check_seed(key: str, value: int) -> None:
    """A random seed: an integer in ``[0, 2**32 - 1]``."""
    check_range(key, value, 0, SEED_MAX)
