"""Catalogues: the German texts as ``.po`` files, compiled into the instance folder at start-up.

Message ids are the English texts. Only text is committed
(``translations/<lang>/LC_MESSAGES/messages.po``); each start compiles a catalogue whose ``.mo``
is missing or stale into ``<instance>/translations``, where Flask-Babel and the language
switch look. Several workers may start at once: each writes a temporary file and renames it
into place, so a reader sees the old or the new catalogue, never half of one.

For developers, with ``babel.cfg`` at the project root (``python -m idserver.i18n``)::

    update   extract every text from idserver/ and merge it into each .po
             (new texts empty, changed ones marked fuzzy: both need a translator)
    check    list texts whose translation is missing or fuzzy; exit 1 if there are any
"""

from __future__ import annotations

import io
import logging
import os
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.catalog import Message
from babel.messages.extract import DEFAULT_KEYWORDS
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.messages.pofile import write_po
from flask import Flask

__all__ = [
    "CATALOGUES",
    "PROJECT_ROOT",
    "compile_catalogues",
    "extract_messages",
    "init_app",
    "read_catalogue",
    "untranslated",
    "update_catalogues",
]

log = logging.getLogger(__name__)

CATALOGUES = Path(__file__).parent / "translations"
PROJECT_ROOT = Path(__file__).parent.parent
MAPPING_FILE = PROJECT_ROOT / "babel.cfg"


def read_catalogue(path: Path) -> Catalog:
    with path.open("rb") as handle:
        return read_po(handle)


def compile_catalogues(target: Path, *, source: Path = CATALOGUES) -> None:
    """Compile every ``.po`` under ``source`` into ``target`` unless it is compiled already.

    A compiled file carries its ``.po``'s modification time, so "up to date" means "same
    time" – an older ``.po`` checked out later is compiled again too.
    """
    for po_path in sorted(source.glob("*/LC_MESSAGES/*.po")):
        mo_path = target / po_path.relative_to(source).with_suffix(".mo")
        po_time = po_path.stat().st_mtime_ns
        if mo_path.exists() and mo_path.stat().st_mtime_ns == po_time:
            continue
        buffer = io.BytesIO()
        write_mo(buffer, read_catalogue(po_path))  # fuzzy translations are left out
        _replace(mo_path, buffer.getvalue(), mtime_ns=po_time)


def _replace(path: Path, data: bytes, *, mtime_ns: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=".tmp-", suffix=".mo", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(temp, 0o644)
        os.utime(temp, ns=(mtime_ns, mtime_ns))
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def init_app(app: Flask) -> None:
    """Compile the catalogues and point Flask-Babel at them (before ``Babel(app)``)."""
    target = Path(app.instance_path) / "translations"
    try:
        compile_catalogues(target)
    except OSError as exc:
        # A read-only instance folder must not cost the citizens their language.
        target = Path(tempfile.mkdtemp(prefix="idserver-translations-"))
        log.warning(
            "cannot write compiled catalogues to the instance folder (%s); using %s", exc, target
        )
        compile_catalogues(target)
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(target)


# -- for developers and the tests: extraction needs the source tree and babel.cfg ---------------
def extract_messages(root: Path = PROJECT_ROOT, mapping_file: Path = MAPPING_FILE) -> Catalog:
    """Every text marked for translation in the sources that ``babel.cfg`` names."""
    with mapping_file.open() as handle:
        method_map, options_map = parse_mapping_cfg(handle, str(mapping_file))
    template = Catalog(project="Bürger-ID", charset="utf-8")
    found = extract_from_dir(
        str(root), method_map, options_map, keywords=DEFAULT_KEYWORDS, strip_comment_tags=True
    )
    for filename, lineno, message, comments, context in found:
        location = (Path(filename).as_posix(), lineno)
        template.add(message, None, [location], auto_comments=comments, context=context)
    return template


def untranslated(catalogue: Catalog, template: Catalog) -> list[str]:
    """Message ids of ``template`` that ``catalogue`` lacks, leaves empty, or marks fuzzy."""
    missing = []
    for message in template:
        if not message.id:
            continue
        found = catalogue.get(message.id, context=message.context)
        if found is None or found.fuzzy or not _complete(found):
            missing.append(_first(message.id))
    return missing


def _complete(message: Message) -> bool:
    strings = message.string if isinstance(message.string, tuple | list) else (message.string,)
    return all(strings)


def _first(message_id: str | Iterable[str]) -> str:
    return message_id if isinstance(message_id, str) else next(iter(message_id))


def update_catalogues(template: Catalog, *, source: Path = CATALOGUES) -> None:
    """Merge ``template`` into every ``.po``: new texts added, vanished ones dropped."""
    for po_path in sorted(source.glob("*/LC_MESSAGES/messages.po")):
        catalogue = read_catalogue(po_path)
        catalogue.update(template, update_creation_date=False)
        buffer = io.BytesIO()
        write_po(buffer, catalogue, width=100, ignore_obsolete=True, include_lineno=False)
        po_path.write_bytes(buffer.getvalue())


def main(argv: list[str]) -> int:
    command = argv[0] if argv else ""
    if command not in ("update", "check"):
        print(__doc__.split("For developers", 1)[1], file=sys.stderr)
        return 2
    template = extract_messages()
    if command == "update":
        update_catalogues(template)
    status = 0
    for po_path in sorted(CATALOGUES.glob("*/LC_MESSAGES/messages.po")):
        missing = untranslated(read_catalogue(po_path), template)
        print(f"{po_path.relative_to(PROJECT_ROOT)}: {len(template)} texts, {len(missing)} to do")
        for message_id in missing:
            print(f"  {message_id}")
        status = status or int(bool(missing))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
