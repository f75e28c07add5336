"""The clerk's audit viewer verifies the chain from the newest signed checkpoint on."""

from __future__ import annotations

from clerk_session import sign_in_clerk
from page import html_of
from sqlalchemy import select

from idserver.audit import verify_since_checkpoint
from idserver.audit.models import AuditCheckpoint
from idserver.audit.models import AuditEvent
from idserver.audit.service import _entry_hash
from idserver.db import db

TAMPERED = "The audit log has been tampered with."


def _clerk_with_checkpoints(app, runner, tmp_path):
    app.config["AUDIT_CHECKPOINT_EVERY"] = 3
    clerk = sign_in_clerk(app, runner, tmp_path)
    for name in ("Muster", "Schmidt", "Meier", "Becker"):
        clerk.browser.get(f"/admin?name={name}")  # each search appends an event
    with app.app_context():
        last = db.session.scalars(select(AuditEvent.id).order_by(AuditEvent.id.desc())).first()
        newest = db.session.scalars(
            select(AuditCheckpoint.event_id).order_by(AuditCheckpoint.event_id.desc())
        ).first()
    assert newest is not None and newest < last  # some entries after the newest checkpoint
    return clerk, newest, last


def _page(clerk, query=""):
    response = clerk.browser.get(f"/admin/audit{query}")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_the_viewer_verifies_from_the_newest_checkpoint_and_says_so(app, runner, tmp_path):
    clerk, newest, _last = _clerk_with_checkpoints(app, runner, tmp_path)
    text = _page(clerk)
    assert f"Verified from the signed checkpoint at entry #{newest} on" in text
    assert TAMPERED not in text
    assert "Verified: the audit log is complete and unchanged." in _page(clerk, "?verify=all")
    with app.app_context():
        problems, checkpoint = verify_since_checkpoint()
        assert problems == [] and checkpoint is not None and checkpoint.event_id >= newest


def test_the_viewer_finds_an_entry_changed_after_the_checkpoint(app, runner, tmp_path):
    clerk, newest, last = _clerk_with_checkpoints(app, runner, tmp_path)
    with app.app_context():
        db.session.get(AuditEvent, last).actor = "someone-else"
        db.session.commit()
    text = _page(clerk)
    assert TAMPERED in text and f"First broken entry: #{last}" in text


def test_the_viewer_finds_the_checkpointed_entry_itself_changed(app, runner, tmp_path):
    clerk, newest, _last = _clerk_with_checkpoints(app, runner, tmp_path)
    with app.app_context():
        db.session.get(AuditEvent, newest).data = {"action": "nothing to see"}
        db.session.commit()
    text = _page(clerk)
    assert TAMPERED in text and f"First broken entry: #{newest}" in text


def test_the_viewer_finds_a_rewritten_chain_through_a_checkpoint(app, runner, tmp_path):
    """Entries rewritten with every later hash recomputed: only the signature can tell."""
    clerk, newest, _last = _clerk_with_checkpoints(app, runner, tmp_path)
    with app.app_context():
        entries = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
        target = entries[newest - 2]  # the entry just before the newest checkpoint's
        target.data = {"action": "nothing to see"}
        previous = target.prev_hash
        for entry in entries[newest - 2 :]:
            entry.prev_hash = previous
            entry.hash = _entry_hash(previous, entry)
            previous = entry.hash
        db.session.commit()
    text = _page(clerk)
    assert TAMPERED in text and f"First broken entry: #{newest}" in text
    assert "checkpoint" in text


def test_a_change_before_the_checkpoint_is_found_by_checking_the_whole_log(app, runner, tmp_path):
    clerk, newest, _last = _clerk_with_checkpoints(app, runner, tmp_path)
    with app.app_context():
        first = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)).first()
        first.actor = "someone-else"
        db.session.commit()
        first_id = first.id
    # the quick check vouches only for what follows the checkpoint, and says so
    assert f"Verified from the signed checkpoint at entry #{newest} on" in _page(clerk)
    text = _page(clerk, "?verify=all")
    assert TAMPERED in text and f"First broken entry: #{first_id}" in text


def test_each_entry_reads_as_a_sentence_with_the_raw_entry_behind_a_disclosure(
    app, runner, tmp_path, citizen, enrolled_phone
):
    clerk = sign_in_clerk(app, runner, tmp_path, role="supervisor")
    clerk.browser.get("/admin?name=Erika&postcode=44137")
    clerk.post(f"/admin/residents/{citizen.id}/revoke-devices")
    page = html_of(clerk.browser.get("/admin/audit"))
    rows = [row for row in page.find("tr") if row.parents[-1].tag == "tbody"]
    cells = {}
    for row in rows:
        sentence = next(p for p in page.find("p", class_="audit-sentence") if row in p.parents)
        raw = next(d for d in page.find("details", class_="audit-raw") if row in d.parents)
        cells.setdefault(sentence.words, raw)
    assert "Searched residents (name, postcode): 1 found." in cells
    assert "Revoked all the resident's devices." in cells
    assert "Opened the resident's record." not in cells  # no resident page was opened
    (device_removed,) = [s for s in cells if s.startswith("Device no. ") and "removed" in s]
    assert "Device registered" in [o.words for o in page.find("option")]
    # the machine form stays available, behind the disclosure
    raw = cells["Searched residents (name, postcode): 1 found."]
    assert "clerk_action" in raw.words and '"fields": ["name", "postcode"]' in raw.words
    assert [s.words for s in page.find("summary")][0].startswith("Raw entry")
    actors = {row.words for row in page.find("td")}
    assert any(words.startswith(f"Clerk {clerk.clerk_id[:8]}") for words in actors)


def test_the_audit_viewer_speaks_german(app, runner, tmp_path, citizen):
    clerk = sign_in_clerk(app, runner, tmp_path, role="supervisor")
    clerk.browser.environ_base["HTTP_ACCEPT_LANGUAGE"] = "de"
    clerk.browser.get("/admin?name=Erika")
    page = html_of(clerk.browser.get("/admin/audit"))
    sentences = [p.words for p in page.find("p", class_="audit-sentence")]
    assert "Personen gesucht (Name): 1 gefunden." in sentences
    assert not [s for s in sentences if "clerk_action" in s or "{" in s]
    assert "Rohdaten" in [s.words for s in page.find("summary")][0]


def test_every_audit_event_and_denial_reason_has_words_in_both_languages(app):
    """No raw event name reaches the clerk: each kind the audit log can hold has a label for the
    filter and a sentence, and each has a German translation."""
    from idserver.admin.events import DENY_REASONS
    from idserver.admin.events import EVENT_LABELS
    from idserver.admin.events import EVENT_SENTENCES
    from idserver.audit.service import EVENTS
    from idserver.crosslogin.models import DenyReason

    assert set(EVENT_LABELS) == EVENTS
    assert set(EVENT_SENTENCES) == EVENTS - {"clerk_action"}  # its actions have their own
    assert set(DENY_REASONS) == set(DenyReason)
    with app.test_request_context(headers={"Accept-Language": "de"}):
        from flask_babel import force_locale

        with force_locale("de"):
            for text in [*EVENT_LABELS.values(), *EVENT_SENTENCES.values()]:
                assert str(text) != text._args[0], text._args[0]  # translated
