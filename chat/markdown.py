"""Markdown from models, rendered safely: no script, event handler or javascript: URL survives."""

from __future__ import annotations

from html import unescape

import nh3
from markdown_it import MarkdownIt

# js-default: CommonMark without raw HTML and with link validation.
_md = MarkdownIt("js-default", {"linkify": False}).enable("table").enable("strikethrough")

_TAGS = {
    "p", "br", "hr", "strong", "em", "del", "code", "pre", "blockquote", "ul", "ol", "li",
    "h1", "h2", "h3", "h4", "h5", "h6", "a", "table", "thead", "tbody", "tr", "th", "td", "img",
}
_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title"}, "code": {"class"}}


def render_markdown(text: str) -> str:
    html = _md.render(text or "")
    return nh3.clean(
        html,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )


def plain_text(text: str) -> str:
    """Markdown as the words a reader sees, for one-line places (titles, previews): no markup, no
    markdown signs, whitespace run together."""
    words = nh3.clean(_md.render(text or ""), tags=set())
    return " ".join(unescape(words).split())
