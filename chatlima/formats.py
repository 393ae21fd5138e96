"""How money, prices and moments are spelled, in one place: every payload, export and page uses these.

- `money_str`: money leaving the server (API answers, stream frames, CSV): plain digits to 8 places.
- `money_display`: money on a page: the same figure with trailing zeros dropped (at least 2 places);
  static/js does the same for figures that arrive over the socket.
- `money_short`: money read at a glance: cents from a dollar up, two significant digits below
  (0.00031); pages give the exact `money_display` figure on hover and focus.
- `count_display`: a count with thousands separators (1,000,000).
- `price_str`: a price per million tokens ("0.30", "0.075").
- `utc_iso`: a moment in UTC with a `Z`, milliseconds by default (as the mobile client writes them).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

MONEY_PLACES = Decimal("0.00000001")


def quantize_money(value: Decimal | int | str) -> Decimal:
    """Money to its 8 stored places, rounded half up (as every cost column stores it)."""
    return Decimal(value).quantize(MONEY_PLACES, rounding=ROUND_HALF_UP)


def money_str(value: Decimal | None) -> str | None:
    """Money as every payload and export spells it: plain digits to 8 places ("0.00000000", "1.50000000").

    Databases hand zero back as 0E-8, which clients cannot read, and a limit stored to 6 places would
    otherwise read differently from a cost stored to 8. Money is Decimal: a float is refused rather
    than spelled with its binary error.
    """
    if value is None:
        return None
    if isinstance(value, float):
        raise TypeError("money is Decimal, never float")
    return f"{quantize_money(value):f}"


def money_display(value: Decimal | str | None) -> str:
    """Money as pages show it: up to 8 decimals, trailing zeros dropped, at least 2."""
    if value is None:
        return ""
    whole, _, frac = money_str(Decimal(value)).partition(".")
    return f"{whole}.{frac.rstrip('0').ljust(2, '0')}"


def _grouped(figure: str) -> str:
    whole, dot, frac = figure.partition(".")
    sign = "-" if whole.startswith("-") else ""
    return f"{sign}{int(whole.lstrip('-') or 0):,}{dot}{frac}"


def money_exact(value: Decimal | str | None) -> str:
    """`money_display` with thousands separators, the exact figure a page offers on hover and focus."""
    return _grouped(money_display(value)) if value is not None else ""


def money_short(value: Decimal | str | None) -> str:
    """Money read at a glance: two places from a dollar up, else two significant digits (at least two
    places, at most the eight stored), rounded half up, trailing zeros dropped, with thousands separators."""
    if value is None:
        return ""
    exact = quantize_money(value)
    size = abs(exact)
    if size >= 1 or not size:
        places = 2
    else:
        first = -size.adjusted()  # the place of the first significant digit: 0.000309 -> 4
        places = min(8, max(2, first + 1))
    whole, _, frac = f"{exact.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP):f}".partition(".")
    return _grouped(f"{whole}.{frac.rstrip('0').ljust(2, '0')}")


def count_display(value: int | None) -> str:
    """A count with thousands separators; nothing for a missing one."""
    return "" if value is None else f"{int(value):,}"


def price_str(value: Decimal | None) -> str | None:
    """A price per million tokens: at least two places, no trailing zeros beyond them (0.30, 0.075)."""
    if value is None:
        return None
    normal = Decimal(value).normalize()
    if normal.as_tuple().exponent > -2:
        normal = normal.quantize(Decimal("0.01"))
    return f"{normal:f}"


def utc_iso(value: datetime | None, timespec: str = "milliseconds") -> str | None:
    """ISO 8601 in UTC ending in `Z`: "2026-12-01T10:00:00.000Z"."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")
