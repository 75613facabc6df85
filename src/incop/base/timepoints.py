"""Points in training as one value type: ``200it`` (iterations) or ``0.25ep`` (a fraction of an
epoch), used by --check_every and --rewind_to."""
from __future__ import annotations

import math

from .errors import UsageError


def parse_point(text: str, flag: str, words: tuple = ()):
    """``<k>it`` -> (k, "it") and ``<f>ep`` -> (f, "ep"), positive (``0it`` too for a point);
    one of ``words`` is returned as it is."""
    text = str(text).strip().lower()
    if text in words:
        return text
    for unit in ("it", "ep"):
        if text.endswith(unit):
            try:
                value = float(text[:-len(unit)])
            except ValueError:
                break
            whole = unit == "ep" or value.is_integer()
            if math.isfinite(value) and whole and (value > 0 or (words and value == 0)):
                return (value, unit)
            break
    choices = ", ".join(words + ("<k>it", "<f>ep"))
    sign = "zero or more" if words else "positive"
    raise UsageError(f"{flag} {text}: choose {choices} (e.g. 200it or 0.25ep), with k a whole "
                     f"number and f {sign}")
