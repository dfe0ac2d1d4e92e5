"""The ``MICROTHREADS_*`` environment variables, read one way.

A variable that is unset or empty means its default. A value that is not
one the variable accepts is refused at once with a ValueError that names the
variable, the value and what it accepts: a typo never silently means the
default. This module imports nothing of the runtime.
"""

from __future__ import annotations

import os

__all__ = ["env_choice", "env_number"]


def env_choice(name: str, choices: tuple[str, ...]) -> str | None:
    """The value of ``name`` (lower-cased), one of ``choices``; None when unset
    or empty. ValueError naming the variable and ``choices`` for anything else."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    value = raw.lower()
    if value not in choices:
        raise ValueError(f"environment variable {name}={raw!r} is not one of"
                         f" {', '.join(choices)} (unset it for the default)")
    return value


def env_number(name: str, what: str, integer: bool = False) -> float | None:
    """The number in ``name`` (``what`` says what it counts), at least 0; None
    when unset or empty. ValueError naming the variable for anything else;
    ``integer`` refuses fractions too."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        value = -1
    if not value >= 0:                       # also refuses nan
        kind = "a whole number" if integer else "a number"
        raise ValueError(f"environment variable {name}={raw!r} is not {kind} of {what}"
                         f" (0 or more; unset it for the default)") from None
    return value
