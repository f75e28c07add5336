"""Reading the portals' pages with the standard library's HTML parser (no regular expressions).

``Page(html)`` indexes every element that has an ``id`` or ``data-*`` attribute: its
attributes, its text and the links inside it; and every form field's value by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from html.parser import HTMLParser

__all__ = ["Element", "Page"]

VOID = frozenset(
    ("area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr")
)


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text: str = ""
    links: list[str] = field(default_factory=list)


class Page(HTMLParser):
    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self.fields: dict[str, str] = {}
        self._open: list[Element] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag in ("input", "textarea", "button") and "name" in values:
            self.fields.setdefault(values["name"], values.get("value", ""))
        if tag == "a" and "href" in values:
            for element in self._open:
                element.links.append(values["href"])
        element = Element(tag, values)
        self.elements.append(element)
        if tag not in VOID:
            self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self._open) - 1, -1, -1):
            if self._open[index].tag == tag:
                del self._open[index:]
                return

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element.text += data

    def by_id(self, element_id: str) -> Element | None:
        return next((e for e in self.elements if e.attrs.get("id") == element_id), None)

    def with_attribute(self, name: str) -> Element | None:
        """The first element carrying attribute ``name`` (e.g. ``data-result``)."""
        return next((e for e in self.elements if name in e.attrs), None)
