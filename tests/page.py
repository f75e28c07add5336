"""A page as the tests read it: elements with their attributes, text and ancestors.

The standard library's ``html.parser`` is enough for server-rendered pages; tests ask for
elements by tag and attributes (``find``), by tag alone (``all``) or by id (``by_id``).
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from html.parser import HTMLParser
from typing import Any

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


@dataclass
class Element:
    """One parsed element: its tag, attributes, text (with its descendants') and ancestors."""

    tag: str
    attrs: dict[str, str]
    parents: list[Element] = field(default_factory=list)
    text: str = ""

    @property
    def words(self) -> str:
        return " ".join(self.text.split())

    @property
    def name(self) -> str:
        """Its accessible name as far as the HTML says: ``aria-label``, else its text."""
        return " ".join((self.attrs.get("aria-label") or self.text).split())

    @property
    def inside(self) -> list[str]:
        """The tags of its ancestors, outermost first."""
        return [parent.tag for parent in self.parents]


class Html(HTMLParser):
    """A whole page, parsed once."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self._open: list[Element] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs}, parents=list(self._open))
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

    def find(self, tag: str, **attrs: str) -> list[Element]:
        """Elements with ``tag`` whose attributes include ``attrs`` (``class_`` for class words)."""
        wanted = {key.rstrip("_").replace("_", "-"): value for key, value in attrs.items()}

        def matches(element: Element) -> bool:
            for key, value in wanted.items():
                if key == "class":
                    if value not in element.attrs.get("class", "").split():
                        return False
                elif element.attrs.get(key) != value:
                    return False
            return True

        return [e for e in self.elements if e.tag == tag and matches(e)]

    def all(self, *tags: str) -> list[Element]:
        return [e for e in self.elements if e.tag in tags]

    @property
    def ids(self) -> list[str]:
        return [e.attrs["id"] for e in self.elements if "id" in e.attrs]

    def by_id(self, element_id: str) -> Element:
        (element,) = [e for e in self.elements if e.attrs.get("id") == element_id]
        return element


def html_of(response: Any) -> Html:
    """The page in a Flask test response."""
    return Html(response.get_data(as_text=True))
