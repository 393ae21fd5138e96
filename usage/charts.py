"""Inline SVG charts drawn on the server: no script, no CDN, readable by screen readers (title + desc)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from usage.pricing import money_str


@dataclass(frozen=True)
class DayPoint:
    day: date
    tokens: int
    cost: Decimal

    @property
    def cost_display(self) -> str:
        return money_display(self.cost)


def money_display(value: Decimal | str | None) -> str:
    """Money as pages show it: up to 8 decimals, trailing zeros dropped, at least 2 (chat.js does the same)."""
    if value is None:
        return ""
    text = money_str(Decimal(value))
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.rstrip('0').ljust(2, '0')}"


def nice_max(value: int | Decimal) -> Decimal:
    """A round axis maximum at or above `value` (1, 2, 5 x 10^n), so tick labels read well.

    Decimal, so a cost axis never passes through float.
    """
    value = Decimal(value)
    if value <= 0:
        return Decimal(1)
    magnitude = Decimal(10) ** math.floor(value.log10())
    return next(step * magnitude for step in (1, 2, 5, 10) if value <= step * magnitude)


def _cost_label(value: Decimal) -> str:
    return f"${value:.4g}"


def daily_tokens_and_cost_svg(points: list[DayPoint], *, chart_id: str = "daily-chart",
                              width: int = 760, height: int = 260) -> SafeString:
    """Token bars on the left axis and a cost line on the right axis, one slot per day.

    Every text that goes into the SVG is escaped; the numbers are ours.
    """
    pad_left, pad_right, pad_top, pad_bottom = 64, 72, 14, 34
    plot_w, plot_h = width - pad_left - pad_right, height - pad_top - pad_bottom
    n = max(len(points), 1)
    slot = plot_w / n
    token_max = nice_max(max((p.tokens for p in points), default=0))
    cost_max = nice_max(max((p.cost for p in points), default=Decimal("0")))
    bottom = pad_top + plot_h
    first = points[0].day.isoformat() if points else ""
    last = points[-1].day.isoformat() if points else ""
    total_tokens = sum(p.tokens for p in points)
    total_cost = sum((p.cost for p in points), Decimal("0"))
    parts = [
        f'<svg class="chart" role="img" aria-labelledby="{chart_id}-title {chart_id}-desc" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg" id="{chart_id}">',
        f'<title id="{chart_id}-title">Daily tokens and cost, {escape(first)} to {escape(last)}</title>',
        f'<desc id="{chart_id}-desc">Bars show tokens per day (left axis, up to {int(token_max):,}); the line shows '
        f'cost in USD (right axis, up to {escape(_cost_label(cost_max))}). {total_tokens:,} tokens and '
        f'${money_display(total_cost)} over {len(points)} days. The table below has the same figures.</desc>',
    ]
    for k in range(5):
        y = bottom - plot_h * k / 4
        parts.append(f'<line class="grid" x1="{pad_left}" x2="{width - pad_right}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text x="{pad_left - 6}" y="{y:.1f}" text-anchor="end" dominant-baseline="middle">'
                     f'{int(token_max * k / 4):,}</text>')
        parts.append(f'<text x="{width - pad_right + 6}" y="{y:.1f}" dominant-baseline="middle">'
                     f'{escape(_cost_label(cost_max * k / 4))}</text>')
    parts.append(f'<line class="axis" x1="{pad_left}" x2="{width - pad_right}" y1="{bottom}" y2="{bottom}"/>')
    coords = []
    every = max(1, math.ceil(n / 10))
    for i, p in enumerate(points):
        x = pad_left + i * slot
        h = plot_h * p.tokens / token_max
        label = f"{p.day.isoformat()}: {p.tokens:,} tokens, ${money_display(p.cost)}"
        parts.append(f'<rect class="bar" x="{x + slot * 0.15:.1f}" y="{bottom - h:.1f}" width="{max(slot * 0.7, 1):.1f}" '
                     f'height="{h:.1f}"><title>{escape(label)}</title></rect>')
        coords.append((x + slot / 2, bottom - plot_h * p.cost / cost_max))
        if i % every == 0:
            parts.append(f'<text x="{x + slot / 2:.1f}" y="{bottom + 18}" text-anchor="middle">'
                         f'{p.day.strftime("%m-%d")}</text>')
    if coords:
        parts.append('<polyline class="cost-line" points="' + " ".join(f"{x:.1f},{y:.1f}" for x, y in coords) + '"/>')
        for x, y in coords:
            parts.append(f'<circle class="cost-dot" cx="{x:.1f}" cy="{y:.1f}" r="2.5"/>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated text above is escaped
