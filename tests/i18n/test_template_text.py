"""Every text a person can see in a template goes through gettext.

Jinja tags are replaced by a marker (keeping line numbers), the rest is parsed as HTML: text
between tags and user-visible attributes (``alt``, ``title``, ``placeholder``, ``aria-label``,
the ``data-msg-*`` texts scripts show …) must not contain words outside ``{{ _("…") }}``.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from idserver.i18n import PROJECT_ROOT

TEMPLATES = PROJECT_ROOT / "idserver" / "templates"
JINJA = re.compile(r"\{#.*?#\}|\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)
MARK = "\x00"
WORD = re.compile(r"[^\W\d_]+")
# Names that are the same in every language, and codes.
ALLOWED = ("Bürger-ID", "Deutsch", "English")
VISIBLE_ATTRIBUTES = {
    "alt",
    "title",
    "placeholder",
    "aria-label",
    "aria-description",
    "aria-placeholder",
    "aria-roledescription",
    "aria-valuetext",
    "label",
}
BUTTON_INPUTS = {"submit", "button", "reset"}
NOT_TEXT = {"script", "style"}


def _without_jinja(source: str) -> str:
    """``source`` with every Jinja tag, expression and comment replaced by MARK (same lines)."""
    return JINJA.sub(lambda match: MARK + "\n" * match.group().count("\n"), source)


def _words(text: str) -> list[str]:
    text = text.replace(MARK, " ")
    for name in ALLOWED:
        text = text.replace(name, " ")
    return WORD.findall(text)


class _VisibleText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.found: list[tuple[int, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name, value in attrs:
            visible = name in VISIBLE_ATTRIBUTES or name.startswith("data-msg-")
            if name == "value" and tag == "input" and values.get("type") in BUTTON_INPUTS:
                visible = True
            if visible and value and _words(value):
                self.found.append((self.getpos()[0], f'{name}="{value}"'))
        if tag in NOT_TEXT:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.open and self.open[-1] == tag:
            self.open.pop()

    def handle_data(self, data: str) -> None:
        if not self.open and _words(data):
            self.found.append((self.getpos()[0], data.strip()))


def untranslated_text(source: str) -> list[tuple[int, str]]:
    parser = _VisibleText()
    parser.feed(_without_jinja(source))
    parser.close()
    return parser.found


@pytest.mark.parametrize(
    "template",
    sorted(path.relative_to(TEMPLATES).as_posix() for path in TEMPLATES.rglob("*.html")),
)
def test_template_has_no_text_outside_gettext(template):
    found = untranslated_text((TEMPLATES / template).read_text())
    assert not found, "\n".join(
        [f"{template}: wrap these in {{{{ _('…') }}}}:"]
        + [f"  line {line}: {text!r}" for line, text in found]
    )


@pytest.mark.parametrize(
    ("source", "complaint"),
    [
        ("<p>Hello</p>", "Hello"),
        ("<p>{{ _('Hello') }} world</p>", "world"),
        ('<input placeholder="Your name">', "Your name"),
        ('<button aria-label="Close">{{ icon }}</button>', "Close"),
        ('<section data-msg-done="Finished">', "Finished"),
        ('<input type="submit" value="Send">', "Send"),
        ("{% if x %}\n<p>Oops</p>\n{% endif %}", "Oops"),
    ],
)
def test_rejects_visible_text_outside_gettext(source, complaint):
    assert any(complaint in text for _line, text in untranslated_text(source))


@pytest.mark.parametrize(
    "source",
    [
        "<p>{{ _('Hello') }}</p>",
        '<a href="{{ url }}" hreflang="de" lang="de">Deutsch</a>',
        "<title>{% block title %}{% endblock %} – Bürger-ID</title>",
        '<input name="code" value="{{ code }}" autocomplete="one-time-code">',
        "<script>const label = 'not shown';</script>",
        "{# a comment for developers #}<th>#</th>",
        '<p class="number">{{ n }} {{ _("Page %(n)s", n=1) }}</p>',
    ],
)
def test_accepts_translated_or_invisible_text(source):
    assert untranslated_text(source) == []


def test_line_numbers_point_into_the_template():
    source = "{% block x %}\n{{ a\n  }}\n<p>Visible</p>\n{% endblock %}"
    assert untranslated_text(source) == [(4, "Visible")]


def test_looks_at_every_template():
    assert len(list(Path(TEMPLATES).rglob("*.html"))) >= 10
