"""The scripted walk-through (``python -m demo_portal --check``) over the real HTTP servers.

A browser (one ``requests.Session``, so one cookie jar for all three sites, as in a real
browser on localhost) and two soft phones do what a tester would do by hand. Each step is
printed as it passes; the first failure ends the walk-through.
"""

from __future__ import annotations

import base64
import html
import json
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import requests

from idserver.phone import PhoneClient

from .launcher import DemoSettings
from .launcher import Letter

__all__ = ["run_walkthrough"]

TIMEOUT = 30
COVER_LETTER = (
    "Sehr geehrte Damen und Herren,\n\nals Anwohnerin des Kreuzviertels kenne ich die "
    "Bürgerdienste gut und möchte das Team gern verstärken.\n\nMit freundlichen Grüßen\n"
    "Erika Mustermann"
)


class StepFailed(AssertionError):
    """A step of the walk-through did not see what it expected."""


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise StepFailed(message)


def _find(pattern: str, text: str, what: str) -> str:
    match = re.search(pattern, text)
    _expect(match is not None, f"no {what} on the page")
    assert match is not None
    return html.unescape(match.group(1))


class Browser:
    def __init__(self, issuer: str) -> None:
        self.issuer = issuer
        self.session = requests.Session()

    def get(self, url: str, **kwargs: object) -> requests.Response:
        return self.session.get(url, timeout=TIMEOUT, **kwargs)  # type: ignore[arg-type]

    def submit(self, page: requests.Response, action: str, **fields: str) -> requests.Response:
        """POST the form at ``action`` with the page's CSRF token (redirects followed)."""
        token = _find(r'name="csrf_token" value="([^"]+)"', page.text, "CSRF token")
        return self.session.post(action, data={"csrf_token": token, **fields}, timeout=TIMEOUT)

    def sign_in(self, portal_url: str, phone: PhoneClient) -> requests.Response:
        """Portal → Bürger-ID's QR page; the phone approves; back at the portal."""
        qr_page = self.get(f"{portal_url}/login")
        _expect(
            qr_page.url.startswith(f"{self.issuer}/login/"),
            f"expected Bürger-ID's QR page, got {qr_page.status_code} {qr_page.url}",
        )
        status = self.get(qr_page.url, headers={"Accept": "application/json"}).json()
        phone.approve(status["phone_url"], status["number"])
        status = self.get(qr_page.url, headers={"Accept": "application/json"}).json()
        _expect(status.get("status") == "approved", f"login not approved: {status}")
        back = self.get(status["continue_url"])
        _expect(
            back.status_code == 200 and back.url.startswith(portal_url),
            f"expected the portal after login, got {back.status_code} {back.url}",
        )
        return back

    def sub_at(self, portal_url: str) -> str:
        return _find(
            r'<code id="sub"[^>]*>([^<]+)</code>', self.get(f"{portal_url}/about").text, "sub"
        )


def run_walkthrough(settings: DemoSettings, letters: list[Letter], *, out: TextIO) -> bool:
    """Enrol, sign in to both portals, get a permit, apply for a job, compare subs, sign out."""
    parking = settings.portal_url("parking")
    jobs = settings.portal_url("jobs")
    letter = {item.key: item for item in letters}
    with tempfile.TemporaryDirectory(prefix="demo-phones-") as phones:
        erika_phone = PhoneClient(settings.issuer, Path(phones) / "erika.json")
        jonas_phone = PhoneClient(settings.issuer, Path(phones) / "jonas.json")
        erika = Browser(settings.issuer)
        jonas = Browser(settings.issuer)
        warden = Browser(settings.issuer)
        found: dict[str, str] = {}

        def enrol_both() -> str:
            erika_phone.enrol(letter["erika"].link)  # as scanned from the letter's QR code
            jonas_phone.enrol(letter["jonas"].activation_url, letter["jonas"].code)  # as typed
            return "Erika (QR-code link) and Jonas (typed code) enrolled a soft phone each"

        def erika_eligible() -> str:
            page = erika.sign_in(parking, erika_phone)
            zone = _find(r'id="eligible" data-zone="([^"]+)"', page.text, "eligible zone")
            return f"Erika signed in to the parking portal: her address is in zone {zone}"

        def permit_issued() -> str:
            start = erika.get(f"{parking}/")
            if 'id="current-permit"' in start.text:  # left by an interrupted walk-through
                link = _find(r'id="current-permit" href="([^"]+)"', start.text, "permit link")
                held = erika.get(parking + link)
                erika.submit(held, held.url + "/cancel")
                start = erika.get(f"{parking}/")
            page = erika.submit(start, f"{parking}/permits", plate="do em 1984")
            _expect(page.status_code == 200 and "/permits/" in page.url, f"no permit: {page.url}")
            found["permit_url"] = page.url
            found["token"] = _find(r'id="permit-token">([^<]+)</pre>', page.text, "permit token")
            qr = erika.get(page.url + "/qr.svg")
            _expect(qr.headers.get("Content-Type", "").startswith("image/svg"), "no QR code")
            return "Erika got a permit for DO-EM 1984, with a signed QR code"

        def token_checks() -> str:
            token = found["token"]
            checked = warden.get(f"{parking}/check", params={"token": token})
            result = _find(r'data-result="([^"]+)"', checked.text, "check result")
            _expect(result == "valid", f"the permit checked as {result}")
            head, claims, signature = token.split(".")
            payload = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
            payload["plate"] = "DO-XX 1"
            altered = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
            forged = f"{head}.{altered}.{signature}"
            checked = warden.get(f"{parking}/check", params={"token": forged})
            result = _find(r'data-result="([^"]+)"', checked.text, "check result")
            _expect(result == "invalid", f"a forged token checked as {result}")
            return "a warden's check says valid; a tampered token is refused"

        def jonas_not_eligible() -> str:
            page = jonas.sign_in(parking, jonas_phone)
            _expect('id="not-eligible"' in page.text, "Jonas was not told he is outside")
            return "Jonas (outside every zone) is told kindly that he cannot get a permit"

        def erika_applies() -> str:
            erika.sign_in(jobs, erika_phone)
            position = erika.get(f"{jobs}/positions/2025-017")
            if 'id="already-applied"' in position.text:  # from an interrupted walk-through
                link = _find(r'(?s)id="already-applied">.*?href="([^"]+)"', position.text, "link")
                earlier = erika.get(jobs + link)
                erika.submit(earlier, earlier.url + "/withdraw")
                position = erika.get(f"{jobs}/positions/2025-017")
            page = erika.submit(
                position, f"{jobs}/positions/2025-017/apply", cover_letter=COVER_LETTER
            )
            state = _find(r'id="application-state"[^>]*>([^<]+)<', page.text, "status")
            _expect("/applications/" in page.url, f"no application: {page.url}")
            found["application_url"] = page.url
            return f"Erika applied at the job portal; status: {state.strip()}"

        def erika_withdraws() -> str:
            page = erika.get(found["application_url"])
            page = erika.submit(page, found["application_url"] + "/withdraw")
            state = _find(r'data-state="([^"]+)"', page.text, "application state")
            _expect(state == "withdrawn", f"the application is {state}")
            return "Erika withdrew her application"

        def subs_differ() -> str:
            at_parking = erika.sub_at(parking)
            at_jobs = erika.sub_at(jobs)
            _expect(at_parking != at_jobs, "both portals got the same sub")
            return f"the portals know Erika by different subs: {at_parking[:10]}… ≠ {at_jobs[:10]}…"

        def cancel_permit() -> str:
            page = erika.get(found["permit_url"])
            erika.submit(page, found["permit_url"] + "/cancel")
            checked = warden.get(f"{parking}/check", params={"token": found["token"]})
            result = _find(r'data-result="([^"]+)"', checked.text, "check result")
            _expect(result == "cancelled", f"a cancelled permit checked as {result}")
            return "Erika cancelled her permit; the warden's check now says cancelled"

        def sign_out() -> str:
            page = erika.get(f"{parking}/")
            done = erika.submit(page, f"{parking}/logout")
            _expect(
                done.url.startswith(f"{parking}/logged-out") and "logout-confirmed" in done.text,
                f"logout ended at {done.url}",
            )
            again = erika.get(f"{parking}/about")
            _expect(again.url.startswith(f"{settings.issuer}/login/"), "still signed in")
            return "Erika signed out of the parking portal and of Bürger-ID"

        steps: list[Callable[[], str]] = [
            enrol_both,
            erika_eligible,
            permit_issued,
            token_checks,
            jonas_not_eligible,
            erika_applies,
            erika_withdraws,
            subs_differ,
            cancel_permit,
            sign_out,
        ]
        out.write(f"\nWalk-through against {settings.issuer}, {parking} and {jobs}:\n")
        try:
            for number, step in enumerate(steps, start=1):
                try:
                    message = step()
                except Exception as exc:  # noqa: BLE001 -- report any failure as the step's
                    out.write(f"  ✗ {number}. {step.__name__}: {type(exc).__name__}: {exc}\n")
                    out.write("Walk-through FAILED.\n")
                    return False
                out.write(f"  ✓ {number}. {message}\n")
                out.flush()
            out.write(f"Walk-through passed: all {len(steps)} steps.\n")
            return True
        finally:
            out.flush()
            for browser in (erika, jonas, warden):
                browser.session.close()  # idle keep-alive connections would delay shutdown
            for phone in (erika_phone, jonas_phone):
                phone.transport.session.close()  # type: ignore[attr-defined]
