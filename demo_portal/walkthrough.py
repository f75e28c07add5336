"""The scripted walk-through (``python -m demo_portal --check``) over the real HTTP servers.

A browser (one ``requests.Session``, so one cookie jar for all three sites, as in a real
browser on localhost) and two soft phones do what a tester would do by hand: the phones are
the ``idserver-phone`` command a tester would type, run as a subprocess. Pages are read with
``html.parser`` (``demo_portal.page``), Bürger-ID's login status as JSON. Each step is printed
as it passes; the first failure ends the walk-through.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from typing import TextIO

import requests

from .config import started_kinds
from .demo_settings import DemoSettings
from .demo_settings import Letter
from .page import Element
from .page import Page

__all__ = ["run_walkthrough"]

TIMEOUT = 30
PHONE_TIMEOUT_SECONDS = 60
BIN = Path(sys.executable).parent
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


def _element(page: requests.Response, element_id: str) -> Element:
    found = Page(page.text).by_id(element_id)
    _expect(found is not None, f"no #{element_id} on {page.url}")
    assert found is not None
    return found


def _attribute(page: requests.Response, name: str) -> str:
    found = Page(page.text).with_attribute(name)
    _expect(found is not None, f"no {name} on {page.url}")
    assert found is not None
    return found.attrs[name]


class SoftPhone:
    """The terminal soft phone, ``idserver-phone --key-file … <command>``, as a tester runs it."""

    def __init__(self, issuer: str, key_file: Path) -> None:
        self.issuer = issuer
        self.key_file = key_file

    def _run(self, *arguments: str) -> dict[str, Any]:
        script = BIN / "idserver-phone"
        command = [str(script)] if script.exists() else [sys.executable, "-m", "idserver.phone"]
        result = subprocess.run(  # noqa: S603 -- the soft phone's console script, our arguments
            [*command, "--key-file", str(self.key_file), "--server", self.issuer, *arguments],
            capture_output=True,
            text=True,
            timeout=PHONE_TIMEOUT_SECONDS,
            check=False,
        )
        try:
            answer: dict[str, Any] = json.loads(result.stdout)
        except ValueError:
            answer = {}
        _expect(
            result.returncode == 0,
            f"idserver-phone {arguments[0]} refused: {answer or result.stdout + result.stderr}",
        )
        return answer

    def enrol(self, letter: Letter) -> None:
        """Enrol with the activation letter's URL and the code typed from it."""
        self._run("enrol", letter.activation_url, "--code", letter.code)

    def enrol_by_link(self, letter: Letter) -> None:
        """Enrol with the letter's QR-code link alone (the code rides in its fragment)."""
        self._run("enrol", letter.link)

    def approve(self, phone_url: str, number: str) -> None:
        self._run("approve", phone_url, "--number", number)


class Browser:
    def __init__(self, issuer: str) -> None:
        self.issuer = issuer
        self.session = requests.Session()

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        return self.session.get(url, timeout=TIMEOUT, **kwargs)

    def submit(self, page: requests.Response, action: str, **fields: str) -> requests.Response:
        """POST the form at ``action`` with the page's CSRF token (redirects followed)."""
        token = Page(page.text).fields.get("csrf_token")
        _expect(bool(token), f"no CSRF token on {page.url}")
        return self.session.post(action, data={"csrf_token": token, **fields}, timeout=TIMEOUT)

    def login_status(self, login_url: str) -> dict[str, Any]:
        answer: dict[str, Any] = self.get(login_url, headers={"Accept": "application/json"}).json()
        return answer

    def sign_in(self, portal_url: str, phone: SoftPhone) -> requests.Response:
        """Portal → Bürger-ID's QR page; the phone approves; back at the portal."""
        qr_page = self.get(f"{portal_url}/login")
        _expect(
            qr_page.url.startswith(f"{self.issuer}/login/"),
            f"expected Bürger-ID's QR page, got {qr_page.status_code} {qr_page.url}",
        )
        status = self.login_status(qr_page.url)
        phone.approve(status["phone_url"], status["number"])
        status = self.login_status(qr_page.url)
        _expect(status.get("status") == "approved", f"login not approved: {status}")
        back = self.get(status["continue_url"])
        _expect(
            back.status_code == 200 and back.url.startswith(portal_url),
            f"expected the portal after login, got {back.status_code} {back.url}",
        )
        return back

    def post_back(self, page: requests.Response) -> requests.Response:
        """What the browser does on Bürger-ID's SAML HTTP-POST page: send its form on."""
        form = Page(page.text).with_attribute("data-auto-submit")
        _expect(form is not None, f"no SAML form on {page.url}")
        assert form is not None
        fields = {
            k: v for k, v in Page(page.text).fields.items() if k.startswith(("SAML", "Relay"))
        }
        return self.session.post(form.attrs["action"], data=fields, timeout=TIMEOUT)

    def saml_sign_in(self, portal_url: str, phone: SoftPhone) -> requests.Response:
        """The SAML portal → Bürger-ID's QR page; the phone approves; the Response posted back."""
        qr_page = self.get(f"{portal_url}/login")
        _expect(
            qr_page.url.startswith(f"{self.issuer}/login/"),
            f"expected Bürger-ID's QR page, got {qr_page.status_code} {qr_page.url}",
        )
        status = self.login_status(qr_page.url)
        phone.approve(status["phone_url"], status["number"])
        status = self.login_status(qr_page.url)
        _expect(status.get("status") == "approved", f"login not approved: {status}")
        back = self.post_back(self.get(status["continue_url"]))
        _expect(
            back.status_code == 200 and back.url.startswith(portal_url),
            f"expected the portal after login, got {back.status_code} {back.url}",
        )
        return back

    def sub_at(self, portal_url: str) -> str:
        return _element(self.get(f"{portal_url}/about"), "sub").text.strip()


def run_walkthrough(settings: DemoSettings, letters: list[Letter], *, out: TextIO) -> bool:
    """Enrol, sign in to both portals, get a permit, apply for a job, compare subs, sign out;
    then register a dog at the SAML portal and sign out there (SAML Single Logout)."""
    parking = settings.portal_url("parking")
    jobs = settings.portal_url("jobs")
    dogtax = settings.portal_url("dogtax")
    letter = {item.key: item for item in letters}
    with tempfile.TemporaryDirectory(prefix="demo-phones-") as phones:
        erika_phone = SoftPhone(settings.issuer, Path(phones) / "erika.json")
        jonas_phone = SoftPhone(settings.issuer, Path(phones) / "jonas.json")
        erika = Browser(settings.issuer)
        jonas = Browser(settings.issuer)
        warden = Browser(settings.issuer)
        found: dict[str, str] = {}

        def check(**query: str) -> str:
            return _attribute(warden.get(f"{parking}/check", params=query), "data-result")

        def enrol_both() -> str:
            erika_phone.enrol_by_link(letter["erika"])  # as scanned from the letter's QR code
            jonas_phone.enrol(letter["jonas"])  # as typed from the letter
            return "Erika (QR-code link) and Jonas (typed code) enrolled a soft phone each"

        def erika_eligible() -> str:
            page = erika.sign_in(parking, erika_phone)
            zone = _element(page, "eligible").attrs.get("data-zone")
            return f"Erika signed in to the parking portal: her address is in zone {zone}"

        def permit_issued() -> str:
            page = erika.submit(erika.get(f"{parking}/"), f"{parking}/permits", plate="do em 1984")
            _expect(page.status_code == 200 and "/permits/" in page.url, f"no permit: {page.url}")
            found["permit_url"] = page.url
            found["number"] = _element(page, "permit-number").text.strip()
            found["reference"] = _element(page, "permit-reference").text.strip()
            qr = erika.get(page.url + "/qr.svg")
            _expect(qr.headers.get("Content-Type", "").startswith("image/svg"), "no QR code")
            return f"Erika got permit {found['number']} for DO-EM 1984, with a signed QR code"

        def warden_checks() -> str:
            _expect(check(ref=found["reference"]) == "valid", "the scanned permit is not valid")
            _expect(check(number=found["number"]) == "valid", "the typed number is not valid")
            number, signature = found["reference"].rsplit(".", 1)
            tampered = f"{number}.{signature[::-1]}"
            _expect(check(ref=tampered) == "invalid", "a tampered QR reference was accepted")
            return "a warden's scan and the typed number say valid; a tampered code is refused"

        def jonas_not_eligible() -> str:
            page = jonas.sign_in(parking, jonas_phone)
            _element(page, "not-eligible")
            return "Jonas (outside every zone) is told kindly that he cannot get a permit"

        def erika_applies() -> str:
            erika.sign_in(jobs, erika_phone)
            position = erika.get(f"{jobs}/positions/2025-017")
            page = erika.submit(
                position, f"{jobs}/positions/2025-017/apply", cover_letter=COVER_LETTER
            )
            state = _element(page, "application-state").text.strip()
            _expect("/applications/" in page.url, f"no application: {page.url}")
            found["application_url"] = page.url
            return f"Erika applied at the job portal; status: {state}"

        def erika_withdraws() -> str:
            page = erika.get(found["application_url"])
            page = erika.submit(page, found["application_url"] + "/withdraw")
            state = _attribute(page, "data-state")
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
            result = check(ref=found["reference"])
            _expect(result == "cancelled", f"a cancelled permit checked as {result}")
            return "Erika cancelled her permit; the warden's check now says cancelled"

        def sign_out() -> str:
            page = erika.get(f"{parking}/")
            done = erika.submit(page, f"{parking}/logout")
            _expect(done.url.startswith(f"{parking}/logged-out"), f"logout ended at {done.url}")
            _element(done, "logout-confirmed")
            again = erika.get(f"{parking}/about")
            _expect(again.url.startswith(f"{settings.issuer}/login/"), "still signed in")
            return "Erika signed out of the parking portal and of Bürger-ID"

        def dog_registered() -> str:
            page = erika.saml_sign_in(dogtax, erika_phone)
            prefilled = _element(page, "owner-family_name").attrs.get("value")
            _expect(prefilled == "Mustermann", f"the form is not prefilled: {prefilled!r}")
            page = erika.submit(
                page,
                f"{dogtax}/register",
                dog_name="Bello",
                breed="Dackel",
                kept_since="2024-05-01",
            )
            _element(page, "my-dogs")
            return "Erika signed in to the dog tax portal over SAML and registered Bello"

        def saml_sign_out() -> str:
            page = erika.get(f"{dogtax}/")
            done = erika.post_back(erika.submit(page, f"{dogtax}/logout"))
            _element(done, "logout-confirmed")
            again = erika.get(f"{dogtax}/about")
            _expect(again.url.startswith(f"{settings.issuer}/login/"), "still signed in")
            return "Erika signed out of the dog tax portal and of Bürger-ID (SAML Single Logout)"

        steps: list[Callable[[], str]] = [
            enrol_both,
            erika_eligible,
            permit_issued,
            warden_checks,
            jonas_not_eligible,
            erika_applies,
            erika_withdraws,
            subs_differ,
            cancel_permit,
            sign_out,
        ]
        if "dogtax" in started_kinds():
            steps += [dog_registered, saml_sign_out]
            out.write(
                f"\nWalk-through against {settings.issuer}, {parking}, {jobs} and {dogtax}:\n"
            )
        else:
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
