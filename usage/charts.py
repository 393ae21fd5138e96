"""The daily chart's geometry, drawn as inline SVG by templates: no script, no CDN, readable by screen readers."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from chatlima.formats import money_display


@dataclass(frozen=True)
class DayPoint:
    day: date
    tokens: int
    cost: Decimal

    @property
    def cost_display(self) -> str:
        return money_display(self.cost)


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


def _compact_count(value: int) -> str:
    """An axis's token figure in few characters: 950, 12k, 1.5M."""
    for size, suffix in ((1_000_000_000, "B"), (1_000_000, "M"), (1_000, "k")):
        if value >= size:
            return f"{Decimal(value) / size:.3g}{suffix}"
    return f"{value:,}"


@dataclass(frozen=True)
class ChartBox:
    width: int = 760
    height: int = 260
    pad_left: int = 64
    pad_right: int = 72
    pad_top: int = 14
    pad_bottom: int = 34
    max_labels: int = 10
    compact_ticks: bool = False  # "12k" rather than "12,000" on the token axis


# The dashboard's chart on a phone: drawn for about 360 px, so its 11 px text stays 11 px and the
# page never scrolls sideways (templates/usage/_daily_chart.html shows one or the other by width).
PHONE_CHART = ChartBox(width=360, height=220, pad_left=42, pad_right=50, pad_top=12, pad_bottom=30,
                       max_labels=4, compact_ticks=True)


def daily_chart(points: list[DayPoint], box: ChartBox = ChartBox(),
                narrow: ChartBox | None = PHONE_CHART) -> dict[str, Any]:
    """The geometry of the daily chart: token bars on the left axis, the cost line on the right, one
    slot per day, four grid steps, at most `box.max_labels` day labels. Both the dashboard
    (templates/usage/_daily_chart.html) and the admin report (templates/admin/usage/report.html)
    draw it; templates escape every text. `narrow` is the same chart for a phone's width (the
    result's "narrow"; None: none).
    """
    plot_w, plot_h = box.width - box.pad_left - box.pad_right, box.height - box.pad_top - box.pad_bottom
    n = max(len(points), 1)
    slot = plot_w / n
    bottom = box.pad_top + plot_h
    token_max = nice_max(max((p.tokens for p in points), default=0))
    cost_max = nice_max(max((p.cost for p in points), default=Decimal("0")))
    every = max(1, math.ceil(n / box.max_labels))
    bars, dots, labels = [], [], []
    for i, p in enumerate(points):
        x = box.pad_left + i * slot
        h = plot_h * p.tokens / token_max
        bars.append({"x": round(x + slot * 0.15, 1), "y": round(bottom - h, 1), "w": round(max(slot * 0.7, 1), 1),
                     "h": round(h, 1), "title": f"{p.day.isoformat()}: {p.tokens:,} tokens, ${p.cost_display}"})
        dots.append({"x": round(x + slot / 2, 1), "y": round(bottom - plot_h * p.cost / cost_max, 1)})
        if i % every == 0:
            labels.append({"x": round(x + slot / 2, 1), "text": p.day.strftime("%m-%d")})
    return {
        "width": box.width, "height": box.height, "left": box.pad_left, "right": box.width - box.pad_right,
        "bottom": bottom, "label_y": bottom + 18, "bars": bars, "dots": dots, "labels": labels,
        "cost_points": " ".join(f"{d['x']},{d['y']}" for d in dots),
        "ticks": [{"y": round(bottom - plot_h * k / 4, 1),
                   "tokens": _compact_count(int(token_max * k / 4)) if box.compact_ticks else f"{int(token_max * k / 4):,}",
                   "cost": _cost_label(cost_max * k / 4)} for k in range(5)],
        "token_max": f"{int(token_max):,}", "cost_max": _cost_label(cost_max),
        "first": points[0].day if points else None, "last": points[-1].day if points else None,
        "total_tokens": f"{sum(p.tokens for p in points):,}",
        "total_cost": money_display(sum((p.cost for p in points), Decimal("0"))), "days": len(points),
        "narrow": daily_chart(points, narrow, None) if narrow is not None else None,
    }
