"""Checks of every argument a visitor or an API caller sends: each returns the value as the
code wants it, or raises ValueError with one sentence naming the field and what is allowed.

The panels call these on raw values (the page's events are wired with ``preprocess=False``), so
a wrong type through the API gets the same message as a wrong value on the page.
"""
from __future__ import annotations

import math

MAX_SEED = 2**63 - 1


def short(value) -> str:
    """A value for a message, cut short (an integer of 400 digits is not worth echoing)."""
    r = repr(value)
    return r if len(r) <= 40 else r[:37] + "..."


def as_int(name: str, value, lo: int, hi: int) -> int:
    """A whole number from ``lo`` to ``hi`` (a float or text that is one is taken)."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a whole number from {lo} to {hi}, got {value!r}")
    try:
        f = float(value)
    except (TypeError, ValueError, OverflowError):         # OverflowError: an int like 10**400
        raise ValueError(f"{name} must be a whole number from {lo} to {hi}, got {short(value)}") from None
    if not math.isfinite(f) or f != int(f) or not lo <= f <= hi:
        raise ValueError(f"{name} must be a whole number from {lo} to {hi}, got {value!r}")
    return int(f)


def as_bool(name: str, value) -> bool:
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    raise ValueError(f"{name} must be true or false, got {value!r}")


def as_float(name: str, value, lo: float, hi: float) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number from {lo} to {hi}, got {value!r}")
    try:
        f = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{name} must be a number from {lo} to {hi}, got {short(value)}") from None
    if not math.isfinite(f) or not lo <= f <= hi:
        raise ValueError(f"{name} must be a number from {lo} to {hi}, got {value!r}")
    return f


def as_seed(value) -> int:
    """A seed, exactly: an integer (or its decimal text) from 0 to 2**63-1. A float is taken only
    below 2**53, where it is still the integer that was typed."""
    msg = f"seed must be a whole number from 0 to 2**63-1 ({MAX_SEED}), got {value!r}"
    if isinstance(value, bool):
        raise ValueError(msg)
    if isinstance(value, str):
        text = value.strip().replace("_", "")
        if not text.isdigit() or not text.isascii() or len(text) > 19:
            raise ValueError(msg)
        value = int(text)
    elif isinstance(value, float):
        if not value.is_integer() or not 0 <= value < 2**53:
            raise ValueError(msg + ("; a number above 2**53 must be sent as an integer or as text, "
                                    "a float cannot hold it exactly" if value.is_integer() else ""))
        value = int(value)
    if not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise ValueError(msg)
    return value


def as_choice(name: str, value, choices) -> str:
    """One of ``choices`` (strings), exactly."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {short(value)}")
    return value
