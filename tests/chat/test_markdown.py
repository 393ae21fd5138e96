"""A stored answer's HTML (chat/markdown.py): code highlighted with Pygments' classes, anything hostile
in the markdown (or in a code block's language) sanitised away, and the stylesheet made from Pygments."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from pygments.formatters import HtmlFormatter

from chat.markdown import ATTRIBUTES, DARK_STYLE, LIGHT_STYLE, TAGS, plain_text, pygments_css, render_markdown

ROOT = Path(__file__).resolve().parents[2]


class Elements(HTMLParser):
    """Every element of some HTML as (tag, {attribute: value})."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def tags(self) -> list[str]:
        return [tag for tag, _ in self.found]


def assert_only_allowed(html: str) -> Elements:
    parsed = Elements(html)
    for tag, attrs in parsed.found:
        assert tag in TAGS, (tag, html)
        for name, value in attrs.items():
            assert name in ATTRIBUTES.get(tag, set()) or (tag, name) == ("a", "rel"), (tag, name, html)
            if name in ("href", "src"):
                assert re.match(r"(https?|mailto):|[^:]*$", value or ""), (tag, name, value)
    return parsed


def test_it_highlights_a_fenced_block_in_a_known_language():
    html = render_markdown("```python\ndef add(a, b):\n    return a + b  # sum\n```\n")
    assert html.startswith('<pre><code class="language-python">')
    assert '<span class="k">def</span>' in html
    assert '<span class="nf">add</span>' in html
    assert '<span class="c1"># sum</span>' in html
    assert "style=" not in html
    parsed = assert_only_allowed(html)
    assert "".join(parsed.text) == "def add(a, b):\n    return a + b  # sum\n" + "\n"  # then the newline after </pre>


def test_highlighting_keeps_leading_blank_lines_and_the_markdown_structure():
    # The page streams the same block unhighlighted: the same lines, so the same height.
    html = render_markdown("Intro\n\n```js\n\n\nlet x = 1;\n```\n\n- one\n- two\n")
    parsed = assert_only_allowed(html)
    assert parsed.tags()[:3] == ["p", "pre", "code"]
    assert "<code class=\"language-js\">\n\n<span" in html
    assert parsed.tags().count("li") == 2


def test_highlighting_adds_no_newline_to_an_unclosed_block():
    # An answer cut short inside its code (stopped, or the stream as the page shows it so far).
    html = render_markdown("```python\nx = 1")
    assert html.endswith('<span class="mi">1</span></code></pre>\n')


def test_an_unknown_language_is_escaped_not_highlighted():
    html = render_markdown("```nosuchlanguage\n<b>bold?</b> & <script>alert(1)</script>\n```\n")
    assert html == ('<pre><code class="language-nosuchlanguage">&lt;b&gt;bold?&lt;/b&gt; &amp; '
                    "&lt;script&gt;alert(1)&lt;/script&gt;\n</code></pre>\n")


def test_a_block_without_a_language_is_plain_text():
    html = render_markdown("```\nif x < 1: pass\n```\n")
    assert html == "<pre><code>if x &lt; 1: pass\n</code></pre>\n"


@pytest.mark.parametrize("language", [
    '"><script>alert(1)</script>',
    "python\"onmouseover=\"alert(1)",
    "<img/src/onerror=alert(1)>",
    "'onclick='alert(1)'",
])
def test_a_hostile_language_stays_inside_the_class_attribute(language):
    html = render_markdown(f"```{language}\nprint(1)\n```\n")
    parsed = assert_only_allowed(html)
    assert parsed.tags() == ["pre", "code"]
    (_, code_attrs), = [item for item in parsed.found if item[0] == "code"]
    assert set(code_attrs) == {"class"}
    assert code_attrs["class"] == "language-" + language.split()[0]
    assert "<script" not in html and "<img" not in html


@pytest.mark.parametrize("source", [
    "<script>window.pwned = 1</script>",
    '<img src=x onerror="window.pwned = 1">',
    "[click](javascript:window.pwned=1)",
    "[click](JaVaScRiPt:alert(1))",
    "[click](java\tscript:alert(1))",
    "![x](javascript:alert(1))",
    "![x](data:image/png;base64,iVBORw0KGgo=)",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[x](vbscript:msgbox(1))",
    '<a href="javascript:alert(1)">raw</a>',
    "<iframe src=//evil.example></iframe>",
    '<div style="position:fixed;inset:0" onclick="alert(1)">cover</div>',
    "<svg><script>alert(1)</script></svg>",
    '[x](https://example.com "t" onmouseover=alert(1))',
    "<details open ontoggle=alert(1)>",
])
def test_hostile_markdown_is_sanitised(source):
    html = render_markdown(f"Before\n\n{source}\n\nAfter `code` **bold**")
    parsed = assert_only_allowed(html)
    assert "<script" not in html.lower()
    assert not any(name.startswith("on") for _, attrs in parsed.found for name in attrs)
    assert not any(re.search(r"(?i)script:|data:", value or "") for _, attrs in parsed.found for value in attrs.values())
    assert "<strong>bold</strong>" in html  # the rest still renders


def test_raw_html_shows_as_text():
    html = render_markdown("<b>not bold</b> and <span class=k>not a token</span>")
    assert html == "<p>&lt;b&gt;not bold&lt;/b&gt; and &lt;span class=k&gt;not a token&lt;/span&gt;</p>\n"


def test_links_keep_safe_urls_and_get_rel():
    html = render_markdown("[a](https://example.com/x?y=1) [b](mailto:me@example.com) [c](/relative)")
    assert '<a href="https://example.com/x?y=1" rel="noopener noreferrer nofollow">a</a>' in html
    assert '<a href="mailto:me@example.com" rel="noopener noreferrer nofollow">b</a>' in html
    assert '<a href="/relative" rel="noopener noreferrer nofollow">c</a>' in html


def test_tables_strikethrough_and_lists_render():
    html = render_markdown("| a | b |\n|:--|--:|\n| 1 | ~~2~~ |\n\n1. one\n2. two\n")
    parsed = assert_only_allowed(html)
    assert {"table", "thead", "tbody", "th", "td", "s", "ol", "li"} <= set(parsed.tags())
    assert "style" not in html  # the columns' alignment is not an allowed attribute


def test_plain_text_has_no_highlighting_or_markup():
    assert plain_text("**Title** with\n```python\nx = 1\n```") == "Title with x = 1"


def test_the_stylesheet_holds_what_pygments_makes():
    css = (ROOT / "static" / "css" / "code.css").read_text()
    generated = css.split("do not edit below.", 1)[1].split("--- */\n", 1)[1]
    assert generated == pygments_css()


def test_the_dark_colours_override_every_light_rule():
    # Else a light colour (say black names) would show on the dark background.
    def rules(style: str) -> dict[str, set[str]]:
        found = {}
        for rule in HtmlFormatter(style=style).get_token_style_defs(".x"):
            token, body = re.match(r"\.x \.(\S+) \{ (.*) \}", rule).groups()
            found[token] = {part.split(":")[0].strip() for part in body.split(";") if part.strip()}
        return found

    light, dark = rules(LIGHT_STYLE), rules(DARK_STYLE)
    assert light and all(token in dark and props <= dark[token] for token, props in light.items())
    css = pygments_css()
    assert ':root[data-theme="dark"] .bubble-content pre .k {' in css
    assert '@media (prefers-color-scheme: dark) {\n  :root:not([data-theme="light"]) .bubble-content pre' in css
