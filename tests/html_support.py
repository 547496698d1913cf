"""Reading an HTML report in the tests: its tags, the text of the elements that matter, its data."""

from __future__ import annotations

import html.parser
import json
from typing import Any, Dict, List, Optional, Tuple


class Page(html.parser.HTMLParser):
    """Every start tag with its attributes; the text of the kept elements under ``tag.class`` (and
    ``#id`` when they have one), an element's text including its children's; the script blocks."""

    KEPT = ("script", "pre", "title", "h1", "summary", "details", "li", "code", "figcaption", "p")

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: List[Tuple[str, Dict[str, Optional[str]]]] = []
        self.scripts: List[Tuple[Dict[str, Optional[str]], str]] = []
        self.texts: Dict[str, List[str]] = {}
        self._open: List[Tuple[str, Dict[str, Optional[str]], List[str]]] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: List[Tuple[str, Optional[str]]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag in self.KEPT:
            self._open.append((tag, attributes, []))

    def handle_endtag(self, tag: str) -> None:
        if self._open and self._open[-1][0] == tag:
            _tag, attributes, parts = self._open.pop()
            text = "".join(parts)
            if tag == "script":
                self.scripts.append((attributes, text))
            if tag == "pre" and text.startswith("\n"):  # as HTML reads it: a newline after <pre> is dropped
                text = text[1:]
            keys = [f"{tag}.{attributes.get('class') or ''}".rstrip(".")]
            if attributes.get("id"):
                keys.append(f"#{attributes['id']}")
            for key in keys:
                self.texts.setdefault(key, []).append(text)
            if self._open:
                self._open[-1][2].append(text)

    def handle_data(self, data: str) -> None:
        if self._open:
            self._open[-1][2].append(data)

    def data(self) -> Dict[str, Any]:
        """The task table's data (the page's ``<script id="task-data">``)."""
        (block,) = [text for attributes, text in self.scripts if attributes.get("id") == "task-data"]
        return json.loads(block)

    def rows(self) -> List[List[Any]]:
        return [row for chunk in self.data()["chunks"] for row in chunk]

    def counts(self) -> List[str]:
        """The status count boxes' texts, whitespace folded."""
        return [" ".join(text.split()) for key, texts in self.texts.items() if key.startswith("li.count")
                for text in texts]
