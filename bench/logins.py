"""Virtual users doing complete QR-code logins over HTTP, as browser, phone and relying party.

One login, as production traffic has it::

    desktop  GET  /authorize?…                  → 303 /login/<id> (+ login cookie)
    desktop  GET  /login/<id>                    → QR page; the browser derives QR frames from
                                                   its data-qr-key, as desktop-login.js does
    desktop  GET  /login/<id>?seen=<v> (JSON)    ⟲ long poll until the status is "approved"
    phone    POST /api/v1/logins/<id>/scan       (the scanned frame's t and h)
    phone    POST /api/v1/logins/<id>/challenge  (the typed number)
    phone         soft-authenticator assertion (client CPU)
    phone    POST /api/v1/logins/<id>/approve
    desktop  GET  /login/<id>/continue           → 303 redirect_uri?code=…&state=…&iss=…
    RP       POST /token                         (client_secret_basic, PKCE verifier)
    RP            verify the ID token against /jwks.json (fetched once, Cache-Control 5 min)

The desktop's long poll runs while the phone works, so the time from the phone's 200 for
``/approve`` to the desktop's answer is the approval→desktop notification latency.
"""

from __future__ import annotations

import base64
import hashlib
import html
import queue
import re
import secrets
import threading
import time
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urlencode
from urllib.parse import urlsplit

from joserfc import jwt
from joserfc.jwk import KeySet

from idserver.crosslogin import qr

from .seed import REDIRECT_URI
from .seed import SCOPE
from .seed import Enrolled
from .server import Server

__all__ = [
    "LoginRecord",
    "PhoneDevice",
    "PhoneResult",
    "RelyingPartyCredentials",
    "VirtualUser",
    "parse_desktop_page",
]

_DATA = re.compile(r'data-([a-z-]+)="([^"]*)"')
_NUMBER = re.compile(r'<strong id="number"[^>]*>(\d\d)</strong>')


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parse_desktop_page(page: str) -> dict[str, Any]:
    """What desktop-login.js reads from the QR page: key, step, version, the number."""
    data = {name: html.unescape(value) for name, value in _DATA.findall(page)}
    number = _NUMBER.search(page)
    if number is None or "qr-key" not in data:
        raise ValueError("not a QR login page")
    return {
        "login_id": data["login-id"],
        "qr_key": _b64decode(data["qr-key"]),
        "step_seconds": int(data["step-seconds"]),
        "version": int(data["version"]),
        "number": number.group(1),
    }


@dataclass(frozen=True)
class RelyingPartyCredentials:
    client_id: str
    client_secret: str


@dataclass
class LoginRecord:
    """Step durations (ms) of one login; ``ok`` is False when any step failed."""

    started: float
    finished: float = 0.0
    ok: bool = False
    error: str | None = None
    steps: dict[str, float] = field(default_factory=dict)
    long_polls: list[float] = field(default_factory=list)
    notify_ms: float | None = None


class StepFailed(Exception):
    pass


def _expect(reply: Any, status: int, step: str) -> None:
    if reply.status != status:
        raise StepFailed(f"{step}: HTTP {reply.status} {reply.body[:200]!r}")


@dataclass(frozen=True)
class PhoneResult:
    login_id: str
    steps: dict[str, float]
    approved_at: float
    error: str | None


class PhoneDevice:
    """The phone half of a virtual user: it approves each login handed to it, on its thread."""

    def __init__(self, server: Server, enrolled: Enrolled) -> None:
        self.agent = server.agent()
        self.authenticator = enrolled.authenticator
        self.origin = server.issuer
        self.inbox: queue.Queue[tuple[str, str, str] | None] = queue.Queue()
        self.outbox: queue.Queue[PhoneResult] = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            job = self.inbox.get()
            if job is None:
                self.agent.close()
                return
            login_id, phone_url, number = job
            steps: dict[str, float] = {}
            try:
                done_at = self.approve(phone_url, number, steps)
                self.outbox.put(PhoneResult(login_id, steps, done_at, None))
            except (StepFailed, OSError, ValueError, KeyError) as exc:
                self.agent.close()
                self.outbox.put(PhoneResult(login_id, steps, 0.0, str(exc)))

    def approve(self, phone_url: str, number: str, steps: dict[str, float]) -> float:
        parts = urlsplit(phone_url)
        login_id = parts.path.rsplit("/", 1)[-1]
        frame = parse_qs(parts.query)
        base = f"/api/v1/logins/{login_id}"
        t = time.perf_counter()
        scanned = self.agent.post(f"{base}/scan", json={"t": frame["t"][0], "h": frame["h"][0]})
        steps["scan"] = (time.perf_counter() - t) * 1000
        _expect(scanned, 200, "scan")
        binding = scanned.json()["binding"]
        t = time.perf_counter()
        issued = self.agent.post(f"{base}/challenge", json={"binding": binding, "number": number})
        steps["challenge"] = (time.perf_counter() - t) * 1000
        _expect(issued, 200, "challenge")
        t = time.perf_counter()
        credential = self.authenticator.get_assertion(issued.json()["options"], origin=self.origin)
        steps["phone_sign"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        approved = self.agent.post(
            f"{base}/approve", json={"binding": binding, "number": number, "credential": credential}
        )
        done_at = time.perf_counter()
        steps["approve"] = (done_at - t) * 1000
        _expect(approved, 200, "approve")
        return done_at

    def result_for(self, login_id: str, *, wait: bool) -> PhoneResult | None:
        """The phone's answer for ``login_id``; answers for logins given up on are dropped."""
        while True:
            try:
                result = self.outbox.get(timeout=60) if wait else self.outbox.get_nowait()
            except queue.Empty:
                if wait:
                    raise StepFailed("phone: no answer within 60 s") from None
                return None
            if result.login_id == login_id:
                return result

    def stop(self) -> None:
        self.inbox.put(None)


class VirtualUser(threading.Thread):
    """A citizen logging in again and again: desktop browser, phone and the RP's back end."""

    def __init__(
        self,
        server: Server,
        enrolled: Enrolled,
        rp: RelyingPartyCredentials,
        stop: threading.Event,
    ) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.issuer = server.issuer
        self.rp = rp
        self.stop_event = stop
        self.phone = PhoneDevice(server, enrolled)
        self.backend = server.agent()
        self.jwks: KeySet | None = None
        self.jwks_fetched = 0.0
        self.records: list[LoginRecord] = []

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                record = LoginRecord(started=time.perf_counter())
                try:
                    self._login(record)
                    record.ok = True
                except (StepFailed, OSError, ValueError, KeyError) as exc:
                    record.error = str(exc)[:300]
                    time.sleep(0.05)
                record.finished = time.perf_counter()
                self.records.append(record)
        finally:
            self.phone.stop()
            self.backend.close()

    def _keys(self, record: LoginRecord) -> KeySet:
        # A relying party caches the JWKS as its Cache-Control says (max-age=300).
        if self.jwks is None or time.monotonic() - self.jwks_fetched > 300:
            t = time.perf_counter()
            reply = self.backend.get("/jwks.json")
            record.steps["jwks"] = (time.perf_counter() - t) * 1000
            _expect(reply, 200, "jwks")
            self.jwks = KeySet.import_key_set(reply.json())
            self.jwks_fetched = time.monotonic()
        return self.jwks

    def _login(self, record: LoginRecord) -> None:
        steps = record.steps
        desktop = self.server.agent()  # a fresh browser profile: its own cookies
        try:
            verifier = secrets.token_urlsafe(48)
            state, nonce = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
            params = {
                "response_type": "code",
                "client_id": self.rp.client_id,
                "redirect_uri": REDIRECT_URI,
                "scope": SCOPE,
                "state": state,
                "nonce": nonce,
                "code_challenge": _b64(hashlib.sha256(verifier.encode()).digest()),
                "code_challenge_method": "S256",
            }
            t = time.perf_counter()
            started = desktop.get("/authorize?" + urlencode(params))
            steps["authorize"] = (time.perf_counter() - t) * 1000
            _expect(started, 303, "authorize")
            login_url = started.location

            t = time.perf_counter()
            page = desktop.get(login_url, headers={"Accept": "text/html"})
            steps["desktop_page"] = (time.perf_counter() - t) * 1000
            _expect(page, 200, "desktop_page")
            shown = parse_desktop_page(page.text)
            login_id = shown["login_id"]
            step = qr.current_step(shown["step_seconds"])
            phone_url = qr.frame_url(self.issuer, login_id, shown["qr_key"], step)
            self.phone.inbox.put((login_id, phone_url, shown["number"]))

            version = shown["version"]
            status: dict[str, Any] = {}
            phone_result = None
            while status.get("status") != "approved":
                t = time.perf_counter()
                polled = desktop.get(
                    f"{login_url}?seen={version}", headers={"Accept": "application/json"}
                )
                now = time.perf_counter()
                record.long_polls.append((now - t) * 1000)
                _expect(polled, 200, "long_poll")
                status = polled.json()
                version = status["version"]
                if status["status"] in ("denied", "expired", "consumed"):
                    raise StepFailed(f"long_poll: login ended as {status['status']}")
                if phone_result is None:
                    phone_result = self.phone.result_for(login_id, wait=False)
                    if phone_result is not None and phone_result.error:
                        raise StepFailed(f"phone: {phone_result.error}")
            desktop_notified = now
            if phone_result is None:
                phone_result = self.phone.result_for(login_id, wait=True)
            assert phone_result is not None
            steps.update(phone_result.steps)
            if phone_result.error:
                raise StepFailed(f"phone: {phone_result.error}")
            # 0 when the desktop heard of the approval before the phone had its own answer
            record.notify_ms = max(0.0, (desktop_notified - phone_result.approved_at) * 1000)

            t = time.perf_counter()
            back = desktop.get(status["continue_url"])
            steps["continue"] = (time.perf_counter() - t) * 1000
            _expect(back, 303, "continue")
            answer = parse_qs(urlsplit(back.location).query)
            if answer.get("state") != [state] or answer.get("iss") != [self.issuer]:
                raise StepFailed(f"continue: unexpected redirect {back.location}")

            t = time.perf_counter()
            tokens = self.backend.post(
                "/token",
                form={
                    "grant_type": "authorization_code",
                    "code": answer["code"][0],
                    "redirect_uri": REDIRECT_URI,
                    "code_verifier": verifier,
                },
                auth=(self.rp.client_id, self.rp.client_secret),
            )
            steps["token"] = (time.perf_counter() - t) * 1000
            _expect(tokens, 200, "token")

            keys = self._keys(record)
            t = time.perf_counter()
            token = jwt.decode(tokens.json()["id_token"], keys, algorithms=["ES256"])
            jwt.JWTClaimsRegistry(
                iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": self.rp.client_id},
                nonce={"essential": True, "value": nonce},
                exp={"essential": True},
                sub={"essential": True},
            ).validate(token.claims)
            steps["rp_verify"] = (time.perf_counter() - t) * 1000
        finally:
            desktop.close()
        record.steps["login_total"] = (time.perf_counter() - record.started) * 1000
