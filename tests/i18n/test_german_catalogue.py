"""The German catalogue is complete, current and safe to format.

Texts are extracted from the sources the way ``babel.cfg`` says, so a new text in a template
or a ``_()``/``_l()`` call fails here until it is translated: run
``python -m idserver.i18n update`` and fill in every empty or fuzzy ``msgstr``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.catalog import Message

from idserver.i18n import CATALOGUES
from idserver.i18n import PROJECT_ROOT
from idserver.i18n import extract_messages
from idserver.i18n import read_catalogue
from idserver.i18n import untranslated

GERMAN = CATALOGUES / "de" / "LC_MESSAGES" / "messages.po"
TEMPLATES = PROJECT_ROOT / "idserver" / "templates"
PLACEHOLDER = re.compile(r"%\((\w+)\)[-#0 +]?\d*(?:\.\d+)?[diouxXeEfFgGcrs]")
STRAY_PERCENT = re.compile(r"%(?!\(\w+\)[-#0 +]?\d*(?:\.\d+)?[diouxXeEfFgGcrs]|%)")
# Words a citizen should not have to know. The clerk console may use them.
JARGON = re.compile(r"passkey|webauthn|openid|oidc|\btoken\b|authenticator", re.IGNORECASE)
STAFF_SOURCES = ("idserver/admin/", "idserver/clerks/", "idserver/templates/admin/")
LETTER = "idserver/admin/letter.py"  # printed for the citizen


@pytest.fixture(scope="module")
def template() -> Catalog:
    return extract_messages()


@pytest.fixture(scope="module")
def german() -> Catalog:
    return read_catalogue(GERMAN)


def _forms(message: Message) -> list[str]:
    return list(message.id) if isinstance(message.id, tuple | list) else [message.id]


def _strings(message: Message) -> list[str]:
    if isinstance(message.string, tuple | list):
        return list(message.string)
    return [message.string]


def _label(message: Message) -> str:
    return _forms(message)[0]


def test_extraction_reads_python_and_every_template(template):
    files = {path for message in template for path, _line in message.locations}
    assert any(path.endswith(".py") for path in files)
    for page in TEMPLATES.rglob("*.html"):
        if "_(" in page.read_text() or "ngettext(" in page.read_text():
            assert page.relative_to(PROJECT_ROOT).as_posix() in files, page


def test_every_text_has_a_german_translation(template, german):
    missing = untranslated(german, template)
    assert not missing, (
        f"{len(missing)} texts lack a German translation (or it is marked fuzzy). Run "
        "`python -m idserver.i18n update` and translate them in "
        + str(GERMAN)
        + ":\n  "
        + "\n  ".join(missing)
    )


def test_the_catalogue_holds_no_translations_nobody_uses(template, german):
    used = {_label(message) for message in template if message.id}
    stale = sorted(
        _label(message) for message in german if message.id and _label(message) not in used
    )
    assert not stale, "run `python -m idserver.i18n update` to drop:\n  " + "\n  ".join(stale)


def test_no_translation_is_fuzzy_or_obsolete(german):
    assert not [_label(message) for message in german if message.id and message.fuzzy]
    assert not german.obsolete


def test_plural_forms_are_germans(german):
    assert german.locale and german.locale.language == "de"
    assert german.num_plurals == 2
    for message in german:
        if message.id and message.pluralizable:
            assert len(_strings(message)) == 2 and all(_strings(message)), _label(message)


def test_placeholders_are_kept_in_every_translation(german):
    wrong = []
    for message in german:
        if not message.id:
            continue
        expected = {name for form in _forms(message) for name in PLACEHOLDER.findall(form)}
        for string in _strings(message):
            if set(PLACEHOLDER.findall(string)) != expected:
                wrong.append(f"{_label(message)!r} -> {string!r}")
    assert not wrong, "placeholders differ:\n  " + "\n  ".join(wrong)


def test_every_translation_formats_like_its_message_id(german):
    """Jinja's new-style gettext always applies ``%``: a stray percent sign would break a page."""
    for message in german:
        if not message.id:
            continue
        values = {name: 1 for form in _forms(message) for name in PLACEHOLDER.findall(form)}
        for text in _forms(message) + _strings(message):
            assert not STRAY_PERCENT.search(text), f"write %% for a percent sign: {text!r}"
            text % values  # raises on a broken placeholder
    assert not list(german.check()), list(german.check())


def test_citizens_read_no_technical_jargon(german):
    """Say "digital key" / "digitaler Schlüssel", not "passkey", on the citizens' pages."""
    found = []
    for message in german:
        if not message.id:
            continue
        sources = [path for path, _line in message.locations]
        if sources and all(p.startswith(STAFF_SOURCES) and p != LETTER for p in sources):
            continue
        for text in _forms(message) + _strings(message):
            if JARGON.search(text):
                found.append(f"{text!r} ({', '.join(sources)})")
    assert not found, "\n  ".join(["jargon on citizens' pages:", *found])


def test_german_addresses_the_citizen_formally(german):
    informal = re.compile(r"\b(du|dich|dir|dein\w*)\b", re.IGNORECASE)
    for message in german:
        for string in _strings(message) if message.id else []:
            assert not informal.search(string), string


def test_catalogue_is_text_only():
    """No compiled file is committed: start-up compiles into the instance folder."""
    assert not list(CATALOGUES.rglob("*.mo"))
    assert isinstance(GERMAN, Path) and GERMAN.is_file()
