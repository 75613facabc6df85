"""Numbers as text: a count and its noun, mean and std, aligned tables."""
from __future__ import annotations

import math
import statistics
from typing import Iterable, Optional, Sequence


def count(n: float, noun: str) -> str:
    """``1 epoch``, ``2 epochs``, ``0.5 epochs``: a number and its noun, agreeing."""
    return f"{n:g} {noun}" if n == 1 else f"{n:g} {noun}s"


def one_of(names: Sequence[str]) -> str:
    """``a, b or c``: the values a setting takes, as its messages and help list them."""
    names = list(names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def mean_std(values: Iterable[Optional[float]]) -> tuple:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return float("nan"), float("nan")
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def plus_minus(mean: Optional[float], std: Optional[float] = None, digits: int = 2,
               signed: bool = False) -> str:
    """``mean ± std`` as every table and message of incop writes it: ``-`` for no value, the
    mean alone where there is no spread to show (``std`` None: one run, one seed)."""
    if mean is None or math.isnan(mean):
        return "-"
    text = f"{mean:+.{digits}f}" if signed else f"{mean:.{digits}f}"
    return text if std is None else f"{text} ± {std:.{digits}f}"


def fmt_ms(values: Iterable[Optional[float]], digits: int = 2) -> str:
    """The values' mean ± std (the mean alone where they do not differ)."""
    m, s = mean_std(values)
    return plus_minus(m, s or None, digits)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]],
                 left: Sequence[int] = ()) -> str:
    """Numbers right-aligned; the columns in ``left`` (names, reasons) left-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) if i in left else c.rjust(w)
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``2.5 h``: a time span as people say it."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
