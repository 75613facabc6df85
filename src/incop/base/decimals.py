"""Numbers as the user typed them: ``0.7`` is seven tenths, not the binary float just below it,
so a count taken from it (70% of 10 weights, 0.3 of 10 samples) is the one a person computes."""
from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Tuple


def exact(x: float) -> Fraction:
    """The decimal a user typed (0.9, 1.2) as an exact fraction, not its binary approximation
    (``Fraction(0.7)`` is just under 7/10, which would floor 10 * 0.7 to 6)."""
    return Fraction(*decimal_ratio(x))


def decimal_ratio(x: float) -> Tuple[int, int]:
    """(numerator, denominator) of the decimal ``repr(x)``, e.g. (7, 10) for 0.7."""
    return Decimal(repr(float(x))).as_integer_ratio()
