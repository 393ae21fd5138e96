"""Figures as pages show them: counts with thousands separators, money short with the exact figure
on hover and focus (chatlima/formats.py spells both; static/js/chat/money.js does the same)."""

from __future__ import annotations

from decimal import Decimal

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

from chatlima.formats import count_display, money_display, money_exact, money_short

register = template.Library()


@register.filter
def count(value: int | None) -> str:
    """{{ n|count }}: 1000000 -> 1,000,000."""
    return count_display(value)


@register.simple_tag
def money(value: Decimal | str | None) -> SafeString | str:
    """{% money cost %}: "$0.00031", carrying the exact figure ("exactly $0.000309") as a tooltip that
    keyboard users reach too when the short figure rounds; data-exact holds it for the page's script."""
    if value is None or value == "":
        return ""
    short, exact = money_short(value), money_exact(value)
    if short == exact:
        return format_html('<span class="money" data-exact="{}">${}</span>', money_display(value), short)
    return format_html('<span class="money" data-exact="{}" title="exactly ${}" tabindex="0">${}</span>',
                       money_display(value), exact, short)
