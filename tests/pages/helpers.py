from __future__ import annotations

import json
from html.parser import HTMLParser


class PageScan(HTMLParser):
    """Collects what would run in a browser: scripts, event-handler attributes, URLs."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.scripts: list[dict[str, str | None]] = []
        self.handlers: list[tuple[str, str]] = []
        self.urls: list[str] = []
        self._in_script: dict[str, str | None] | None = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        for name, value in attrs:
            if name.lower().startswith("on"):
                self.handlers.append((tag, name))
            if name.lower() in ("href", "src", "action", "formaction") and value:
                self.urls.append(value)
        if tag == "script":
            self._in_script = {"id": attributes.get("id"), "type": attributes.get("type"),
                               "src": attributes.get("src"), "text": ""}
            self.scripts.append(self._in_script)

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = None

    def handle_data(self, data):
        if self._in_script is not None:
            self._in_script["text"] = (self._in_script["text"] or "") + data


def scan(html: str) -> PageScan:
    parser = PageScan()
    parser.feed(html)
    return parser


def page_data(html: str) -> dict:
    found = [s for s in scan(html).scripts if s["id"] == "chat-data"]
    assert len(found) == 1 and found[0]["type"] == "application/json"
    return json.loads(found[0]["text"])


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        self._skip += tag in ("script", "style")

    def handle_endtag(self, tag):
        self._skip -= tag in ("script", "style")

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def scan_text(html: str) -> list[str]:
    """The page's text nodes outside scripts and styles (what a browser would show or read out)."""
    parser = _Text()
    parser.feed(html)
    return parser.parts
