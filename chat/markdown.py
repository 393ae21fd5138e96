"""Markdown from models, rendered safely: no script, event handler or javascript: URL survives.

The page renders the same markdown while an answer streams (static/js/chat/render.js: markdown-it,
the library markdown-it-py ports, with the same preset and rules, then DOMPurify with the same
allowlist as nh3 here), so the stored answer's HTML swaps in with the same block structure. Code
blocks are highlighted here with Pygments (class names only; the colours are static/css/code.css,
made by `pygments_css`).
"""

from __future__ import annotations

from html import unescape

import nh3
from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

# The sanitiser's allowlist (markdown-it's strikethrough is <s>). The page's copy is ALLOWED in
# static/js/chat/render.js: change both.
TAGS = {
    "p", "br", "hr", "strong", "em", "s", "del", "code", "pre", "blockquote", "ul", "ol", "li",
    "h1", "h2", "h3", "h4", "h5", "h6", "a", "table", "thead", "tbody", "tr", "th", "td", "img",
    "span",
}
ATTRIBUTES = {
    "a": {"href", "title"}, "img": {"src", "alt", "title"}, "code": {"class"}, "span": {"class"},
}
URL_SCHEMES = {"http", "https", "mailto"}
LINK_REL = "noopener noreferrer nofollow"

# Pygments styles of the code blocks: WCAG AA contrast on their own backgrounds, both.
LIGHT_STYLE, DARK_STYLE = "xcode", "github-dark"
# Only class names reach the page (nh3 keeps `span class`, no style attribute).
_FORMATTER = HtmlFormatter(nowrap=True)


def _highlight(code: str, lang: str, _attrs: object) -> str:
    """Pygments' spans for a fenced block in a language it knows; "" leaves the block to
    markdown-it, which escapes it (an unknown or hostile language is only ever text)."""
    if not lang:
        return ""
    try:
        # The text exactly (no blank lines stripped, no newline added), as the page streamed it.
        lexer = get_lexer_by_name(lang, stripnl=False, ensurenl=False)
    except ClassNotFound:
        return ""
    html = highlight(code, lexer, _FORMATTER)
    # The formatter ends its last line with a newline, even one the code (cut short) did not have.
    return html[:-1] if html.endswith("\n") and not code.endswith("\n") else html


# js-default: markdown-it's "default" preset (CommonMark + table + strikethrough, no raw HTML,
# links validated), as render.js configures markdown-it itself.
_md = MarkdownIt("js-default", {"linkify": False, "highlight": _highlight}).enable("table").enable("strikethrough")
_plain_md = MarkdownIt("js-default", {"linkify": False}).enable("table").enable("strikethrough")


def render_markdown(text: str) -> str:
    html = _md.render(text or "")
    return nh3.clean(html, tags=TAGS, attributes=ATTRIBUTES, url_schemes=URL_SCHEMES, link_rel=LINK_REL)


def plain_text(text: str) -> str:
    """Markdown as the words a reader sees, for one-line places (titles, previews): no markup, no
    markdown signs, whitespace run together."""
    words = nh3.clean(_plain_md.render(text or ""), tags=set())
    return " ".join(unescape(words).split())


def pygments_css() -> str:
    """The token colours of static/css/code.css: the light style, then the dark one for the dark
    theme, chosen by the toggle (`data-theme`) or else by the system, as static/css/app.css does."""
    light = HtmlFormatter(style=LIGHT_STYLE).get_token_style_defs(".bubble-content pre")
    dark_rules = HtmlFormatter(style=DARK_STYLE).get_token_style_defs(".bubble-content pre")
    chosen = [':root[data-theme="dark"] ' + rule for rule in dark_rules]
    system = ['  :root:not([data-theme="light"]) ' + rule for rule in dark_rules]
    return "\n".join([
        f"/* Light: Pygments' {LIGHT_STYLE!r} style. */", *light,
        f"/* Dark: Pygments' {DARK_STYLE!r} style, when the toggle chose dark... */", *chosen,
        "/* ...or the system is dark and the toggle chose nothing. */",
        "@media (prefers-color-scheme: dark) {", *system, "}",
    ]) + "\n"
