"""Start-up compiles the committed ``.po`` into the instance folder, once, atomically."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

from babel.support import Translations
from flask import Flask

from idserver import i18n
from idserver.i18n import CATALOGUES
from idserver.i18n import compile_catalogues

GERMAN_PO = Path("de") / "LC_MESSAGES" / "messages.po"
GERMAN_MO = GERMAN_PO.with_suffix(".mo")


def _source(tmp_path: Path) -> Path:
    source = tmp_path / "source"
    (source / GERMAN_PO).parent.mkdir(parents=True)
    shutil.copy2(CATALOGUES / GERMAN_PO, source / GERMAN_PO)
    return source


def _german(folder: Path) -> Translations:
    return Translations.load(str(folder), ["de"])


def test_compiles_into_the_target_folder(tmp_path):
    target = tmp_path / "compiled"
    compile_catalogues(target, source=_source(tmp_path))
    assert _german(target).gettext("How it works") == "So funktioniert es"
    assert [p.name for p in target.rglob("*")] == ["de", "LC_MESSAGES", "messages.mo"]


def test_compiles_only_when_the_catalogue_changed(tmp_path):
    source, target = _source(tmp_path), tmp_path / "compiled"
    compile_catalogues(target, source=source)
    compiled = (target / GERMAN_MO).stat()
    assert compiled.st_mtime_ns == (source / GERMAN_PO).stat().st_mtime_ns

    compile_catalogues(target, source=source)
    assert (target / GERMAN_MO).stat().st_ino == compiled.st_ino  # not written again

    po = source / GERMAN_PO
    po.write_text(
        po.read_text().replace('msgstr "So funktioniert es"', 'msgstr "So geht es"'),
        encoding="utf-8",
    )
    later = compiled.st_mtime_ns + 5_000_000_000
    os.utime(po, ns=(later, later))
    compile_catalogues(target, source=source)
    assert _german(target).gettext("How it works") == "So geht es"

    older = compiled.st_mtime_ns - 5_000_000_000  # an older .po checked out: compiled too
    po.write_text(po.read_text().replace("So geht es", "So klappt es"), encoding="utf-8")
    os.utime(po, ns=(older, older))
    compile_catalogues(target, source=source)
    assert _german(target).gettext("How it works") == "So klappt es"


def test_workers_starting_together_all_get_a_whole_catalogue(tmp_path):
    source, target = _source(tmp_path), tmp_path / "compiled"
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def worker() -> None:
        try:
            start.wait()
            for _ in range(5):
                compile_catalogues(target, source=source)
                assert _german(target).gettext("Log out") == "Abmelden"
        except BaseException as exc:  # noqa: BLE001 -- reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert [p.name for p in (target / GERMAN_MO).parent.iterdir()] == ["messages.mo"]


def test_fuzzy_translations_are_not_compiled(tmp_path):
    source, target = _source(tmp_path), tmp_path / "compiled"
    po = source / GERMAN_PO
    text = po.read_text()
    po.write_text(
        text.replace('msgid "Log out"\n', '#, fuzzy\nmsgid "Log out"\n', 1), encoding="utf-8"
    )
    compile_catalogues(target, source=source)
    assert _german(target).gettext("Log out") == "Log out"


def test_the_app_reads_its_compiled_catalogue_from_the_instance_folder(app):
    folder = Path(app.config["BABEL_TRANSLATION_DIRECTORIES"])
    assert folder == Path(app.instance_path) / "translations"
    assert (folder / GERMAN_MO).is_file()


def test_an_unwritable_instance_folder_falls_back_to_a_private_temporary_one(tmp_path):
    blocked = tmp_path / "instance"
    blocked.write_text("a file where the instance folder should be")
    app = Flask("idserver", instance_path=str(blocked))
    i18n.init_app(app)
    folder = Path(app.config["BABEL_TRANSLATION_DIRECTORIES"])
    try:
        assert not folder.is_relative_to(blocked)
        assert _german(folder).gettext("How it works") == "So funktioniert es"
    finally:
        shutil.rmtree(folder)
