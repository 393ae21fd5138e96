"""The daily chart's phone drawing: the same figures in a 360-wide box, few day labels and short
token ticks, so its text stays legible and the dashboard never scrolls sideways at 390 px."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from usage.charts import PHONE_CHART, DayPoint, daily_chart


def points(days: int) -> list[DayPoint]:
    start = date(2026, 11, 1)
    return [DayPoint(start + timedelta(days=i), 1000 * (i + 1), Decimal("0.0001") * (i + 1)) for i in range(days)]


def test_the_narrow_chart_draws_the_same_days_in_a_phones_width():
    chart = daily_chart(points(30))
    narrow = chart["narrow"]
    assert (chart["width"], narrow["width"]) == (760, PHONE_CHART.width)
    assert len(narrow["bars"]) == len(chart["bars"]) == 30
    assert (narrow["total_tokens"], narrow["total_cost"]) == (chart["total_tokens"], chart["total_cost"])
    assert len(narrow["labels"]) <= PHONE_CHART.max_labels < len(chart["labels"])
    assert all(bar["x"] + bar["w"] <= narrow["right"] for bar in narrow["bars"])
    assert [t["tokens"] for t in narrow["ticks"]] == ["0", "12.5k", "25k", "37.5k", "50k"]
    assert chart["ticks"][-1]["tokens"] == "50,000"
    assert narrow["narrow"] is None


def test_the_admin_report_can_go_without_one():
    assert daily_chart(points(3), narrow=None)["narrow"] is None
