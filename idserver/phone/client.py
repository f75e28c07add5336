"""The reference soft phone's HTTP client: enrol with a letter's code, confirm QR-code logins.

It speaks only the phone API under ``/api/v1``, as a native app would::

    enrol:    POST /enrolments {activation_id, code}   → {enrolment_id, options}
              POST /enrolments/{id} {credential, name} → {device, revocation_code}
    approve:  POST /logins/{id}/scan {t, h[, binding]} → {binding, status, context, warnings}
              POST /logins/{id}/challenge {binding, number}
                                                       → {options, challenge_inputs}
              POST /logins/{id}/approve {binding, number, credential}
    deny:     POST /logins/{id}/scan …, then POST /logins/{id}/deny {binding}

Like a careful native app it signs nothing it cannot check: the WebAuthn challenge must be
``SHA-256(nonce ‖ canonical JSON of {context, number})`` over the context it showed at scan,
and the RP ID must be the server's host or a parent domain of it (WebAuthn L3 §5.1.3,
§5.1.4). Nor does it approve a login whose computer is in another network than the phone (the
QR-relay attack, RFC 10027) unless told that the citizen sits at that computer anyway.
Bindings from scans are kept beside the key file (mode 0600) until the login ends, so
``show`` followed by ``approve`` works with the same, by then stale, QR URL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from typing import Protocol
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import requests

from .authenticator import AuthenticatorError
from .authenticator import SoftAuthenticator

__all__ = [
    "FlaskTransport",
    "LoginView",
    "PhoneClient",
    "PhoneError",
    "RequestsTransport",
    "Transport",
    "canonical_json",
    "expected_approval_challenge",
]

BINDING_HEADER = "X-Login-Binding"
DEFAULT_TIMEOUT_SECONDS = 15.0


class PhoneError(Exception):
    """The server refused a request, or the phone refused to go on.

    ``status`` is the HTTP status for server refusals and ``None`` for the phone's own.
    """

    def __init__(self, error: str, description: str = "", status: int | None = None) -> None:
        self.error = error
        self.description = description
        self.status = status
        super().__init__(f"{error}: {description}" if description else error)

    def to_json(self) -> dict[str, Any]:
        return {"error": self.error, "error_description": self.description, "status": self.status}


# -- transports -----------------------------------------------------------------------------
class Response(Protocol):
    @property
    def status_code(self) -> int: ...

    def json(self) -> Any: ...


class Transport(Protocol):
    """What the client needs from HTTP; ``requests.Session`` wrapped, or a test adapter."""

    def post(
        self, url: str, *, json: Any = None, headers: dict[str, str] | None = None
    ) -> Response: ...

    def get(self, url: str, *, headers: dict[str, str] | None = None) -> Response: ...


class RequestsTransport:
    """A ``requests.Session`` with a timeout and no redirects (the API never redirects)."""

    def __init__(
        self, session: requests.Session | None = None, *, timeout: float = DEFAULT_TIMEOUT_SECONDS
    ) -> None:
        self.session = session if session is not None else requests.Session()
        self.timeout = timeout

    def post(
        self, url: str, *, json: Any = None, headers: dict[str, str] | None = None
    ) -> Response:
        return self.session.post(
            url, json=json, headers=headers, timeout=self.timeout, allow_redirects=False
        )

    def get(self, url: str, *, headers: dict[str, str] | None = None) -> Response:
        return self.session.get(url, headers=headers, timeout=self.timeout, allow_redirects=False)


@dataclass(frozen=True)
class _TestResponse:
    status_code: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)  # ValueError on a non-JSON body, as with requests


class FlaskTransport:
    """Adapts a Flask test client: absolute URLs become paths on the URL's scheme and host."""

    def __init__(self, test_client: Any) -> None:
        self.test_client = test_client

    @staticmethod
    def _split(url: str) -> tuple[str, str]:
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        return f"{parts.scheme}://{parts.netloc}", path

    def post(
        self, url: str, *, json: Any = None, headers: dict[str, str] | None = None
    ) -> Response:
        base_url, path = self._split(url)
        response = self.test_client.post(path, json=json, headers=headers, base_url=base_url)
        return _TestResponse(response.status_code, response.get_data())

    def get(self, url: str, *, headers: dict[str, str] | None = None) -> Response:
        base_url, path = self._split(url)
        response = self.test_client.get(path, headers=headers, base_url=base_url)
        return _TestResponse(response.status_code, response.get_data())


# -- the approval challenge -----------------------------------------------------------------
def canonical_json(value: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8: the bytes the server hashes into the challenge."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def expected_approval_challenge(nonce: bytes, context: dict[str, Any], number: str) -> bytes:
    """``SHA-256(nonce ‖ canonical_json({"context": context, "number": number}))``."""
    return hashlib.sha256(nonce + canonical_json({"context": context, "number": number})).digest()


def _b64url_decode(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise PhoneError("invalid_response", f"{what} is not a base64url string")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError as exc:
        raise PhoneError("invalid_response", f"{what} is not valid base64url") from exc


# -- URLs -----------------------------------------------------------------------------------
def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _split_at(url: str, marker: str, what: str) -> tuple[str, str]:
    """``{server}{marker}{rest}`` → (server, rest); the server may have a path prefix."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or marker not in parts.path:
        raise PhoneError("invalid_url", f"this is not a Bürger-ID {what} URL: {url}")
    prefix, _, rest = parts.path.rpartition(marker)
    if not rest or "/" in rest:
        raise PhoneError("invalid_url", f"this is not a Bürger-ID {what} URL: {url}")
    return f"{parts.scheme}://{parts.netloc}{prefix}", rest


def _rp_id_fits(rp_id: Any, host: str) -> bool:
    """The RP ID is the host or a parent domain of it (WebAuthn L3 §5.1.3, §5.1.4)."""
    return isinstance(rp_id, str) and bool(rp_id) and (host == rp_id or host.endswith("." + rp_id))


@dataclass(frozen=True)
class LoginView:
    """A scanned login: what the phone shows the citizen before they type the number."""

    login_id: str
    server: str
    binding: str
    context: dict[str, Any]
    status: str
    warnings: tuple[dict[str, Any], ...] = ()

    @property
    def same_network(self) -> bool:
        """False if the server says the computer is in another network than this phone."""
        return self.context.get("same_network") is not False


class PhoneClient:
    """A citizen's phone: a key file, a server to talk to and an HTTP transport.

    ``server`` pins the phone to one Bürger-ID (URLs for any other server are refused); with
    ``None`` the server is taken from each URL. ``origin`` is the WebAuthn origin the phone
    claims; by default the server's origin. ``session`` is a ``requests.Session`` or any
    object with ``post(url, json=, headers=)`` and ``get(url, headers=)``.
    """

    def __init__(
        self,
        server: str | None,
        key_file: str | os.PathLike[str],
        *,
        origin: str | None = None,
        session: requests.Session | Transport | None = None,
    ) -> None:
        self.server = server.rstrip("/") if server else None
        self.key_file = Path(key_file)
        self.origin = origin
        if session is None or isinstance(session, requests.Session):
            self.transport: Transport = RequestsTransport(session)
        else:
            self.transport = session
        self._authenticator: SoftAuthenticator | None = None

    # -- the phone's state ------------------------------------------------------------------
    @property
    def authenticator(self) -> SoftAuthenticator:
        if self._authenticator is None:
            try:
                self._authenticator = SoftAuthenticator.load(self.key_file)
            except AuthenticatorError as exc:
                raise PhoneError("key_file_unreadable", str(exc)) from exc
        return self._authenticator

    @property
    def bindings_file(self) -> Path:
        return self.key_file.with_name(self.key_file.name + ".logins")

    def credentials(self) -> list[dict[str, Any]]:
        """The credentials this phone holds; public facts only, never private keys."""
        return [
            {
                "credential_id": base64.urlsafe_b64encode(key.credential_id).rstrip(b"=").decode(),
                "rp_id": key.rp_id,
                "sign_count": key.sign_count,
            }
            for key in self.authenticator.keys
        ]

    # -- enrolment --------------------------------------------------------------------------
    def enrol(
        self, activation_url: str, code: str | None = None, *, name: str = "Soft phone"
    ) -> dict[str, Any]:
        """Register a new passkey with the code from the activation letter.

        ``activation_url`` is the printed address (then ``code`` is the printed code) or the
        link in the letter's QR code, which carries the code in its fragment (``#code=…``).
        """
        server, activation_id = _split_at(activation_url, "/activate/", "activation")
        server = self._check_server(server)
        if code is None:
            code = parse_qs(urlsplit(activation_url).fragment).get("code", [""])[0]
        if not code.strip():
            raise PhoneError("invalid_url", "no activation code: give it, or the letter's QR link")
        begun = self._post(
            f"{server}/api/v1/enrolments", {"activation_id": activation_id, "code": code.strip()}
        )
        enrolment_id = begun.get("enrolment_id")
        options = begun.get("options")
        if not isinstance(enrolment_id, str) or not isinstance(options, dict):
            raise PhoneError("invalid_response", "the enrolment answer is incomplete")
        rp_id = (options.get("rp") or {}).get("id")
        self._check_rp_id(rp_id, server)
        authenticator = self.authenticator
        try:
            credential = authenticator.create_credential(options, origin=self._origin(server))
        except AuthenticatorError as exc:
            raise PhoneError("authenticator_refused", str(exc)) from exc
        try:
            finished = self._post(
                f"{server}/api/v1/enrolments/{enrolment_id}",
                {"credential": credential, "name": name},
                expect=201,
            )
        except PhoneError:
            # The server did not keep the credential, so the phone should not keep the key.
            authenticator.keys.pop()
            authenticator.save()
            raise
        return finished

    # -- logins -----------------------------------------------------------------------------
    def scan(self, phone_url: str) -> LoginView:
        """Open a login from the QR code's URL; the first phone to scan gets the binding."""
        server, login_id = _split_at(phone_url, "/q/", "login")
        server = self._check_server(server)
        query = parse_qs(urlsplit(phone_url).query)
        t, h = query.get("t", [None])[0], query.get("h", [None])[0]
        if not t or not h:
            raise PhoneError("invalid_url", f"the login URL lacks t or h: {phone_url}")
        body: dict[str, Any] = {"t": t, "h": h}
        known = self._load_bindings().get(login_id)
        if known is not None:
            body["binding"] = known["binding"]
        scanned = self._post(f"{server}/api/v1/logins/{login_id}/scan", body)
        binding = scanned.get("binding")
        context = scanned.get("context")
        status = scanned.get("status")
        if (
            not isinstance(binding, str)
            or not isinstance(context, dict)
            or not isinstance(status, str)
        ):
            raise PhoneError("invalid_response", "the scan answer is incomplete")
        if context.get("login_id") != login_id:
            raise PhoneError("context_mismatch", "the server described a different login")
        warnings = scanned.get("warnings", [])
        if not isinstance(warnings, list) or not all(isinstance(w, dict) for w in warnings):
            raise PhoneError("invalid_response", "the scan answer's warnings are malformed")
        self._remember_binding(login_id, binding, context.get("expires_at"))
        return LoginView(
            login_id=login_id,
            server=server,
            binding=binding,
            context=context,
            status=status,
            warnings=tuple(warnings),
        )

    def status(self, view: LoginView) -> dict[str, Any]:
        """Read the login again (``GET /logins/{id}`` with the binding header)."""
        return self._get(
            f"{view.server}/api/v1/logins/{view.login_id}", {BINDING_HEADER: view.binding}
        )

    def approve(
        self, phone_url: str, number: str, *, accept_other_network: bool = False
    ) -> dict[str, Any]:
        """Scan, ask for the challenge with the typed number, check it, sign and approve.

        If the computer is in another network than the phone, the phone stops before anything
        is typed or signed (``other_network``; the login stays open, to be denied or approved
        again with ``accept_other_network=True`` by a citizen who sits at that computer).
        """
        view = self.scan(phone_url)
        if not view.same_network and not accept_other_network:
            raise PhoneError("other_network", _warning_text(view))
        number = number.strip()
        base = f"{view.server}/api/v1/logins/{view.login_id}"
        try:
            issued = self._post(f"{base}/challenge", {"binding": view.binding, "number": number})
        except PhoneError as exc:
            if exc.error == "wrong_number":
                self._forget_binding(view.login_id)
            raise
        options = self._checked_request_options(view, issued, number)
        try:
            credential = self.authenticator.get_assertion(options, origin=self._origin(view.server))
        except AuthenticatorError as exc:
            raise PhoneError("authenticator_refused", str(exc)) from exc
        approved = self._post(
            f"{base}/approve",
            {"binding": view.binding, "number": number, "credential": credential},
        )
        self._forget_binding(view.login_id)
        return approved

    def deny(self, phone_url: str) -> dict[str, Any]:
        """Scan and say no: the login ends and the application is told."""
        view = self.scan(phone_url)
        denied = self._post(
            f"{view.server}/api/v1/logins/{view.login_id}/deny", {"binding": view.binding}
        )
        self._forget_binding(view.login_id)
        return denied

    def _checked_request_options(
        self, view: LoginView, issued: dict[str, Any], number: str
    ) -> dict[str, Any]:
        """The request options, if their challenge commits to what the citizen saw and typed."""
        options = issued.get("options")
        inputs = issued.get("challenge_inputs")
        if not isinstance(options, dict) or not isinstance(inputs, dict):
            raise PhoneError("invalid_response", "the challenge answer is incomplete")
        if inputs.get("context") != view.context:
            raise PhoneError(
                "context_mismatch",
                "the server wants a signature over a different login than the one shown",
            )
        nonce = _b64url_decode(inputs.get("nonce"), "challenge_inputs.nonce")
        challenge = _b64url_decode(options.get("challenge"), "options.challenge")
        expected = expected_approval_challenge(nonce, view.context, number)
        if not hmac.compare_digest(challenge, expected):
            raise PhoneError(
                "challenge_mismatch",
                "the challenge does not commit to the login shown and the number typed",
            )
        self._check_rp_id(options.get("rpId"), view.server)
        return options

    # -- HTTP -------------------------------------------------------------------------------
    def _post(self, url: str, body: dict[str, Any], *, expect: int = 200) -> dict[str, Any]:
        try:
            response = self.transport.post(url, json=body, headers={"Accept": "application/json"})
        except requests.RequestException as exc:
            raise PhoneError("network_error", str(exc)) from exc
        return _answer(response, expect)

    def _get(self, url: str, headers: dict[str, str]) -> dict[str, Any]:
        try:
            response = self.transport.get(url, headers={"Accept": "application/json", **headers})
        except requests.RequestException as exc:
            raise PhoneError("network_error", str(exc)) from exc
        return _answer(response, 200)

    def _check_server(self, server: str) -> str:
        if self.server is not None and server != self.server:
            raise PhoneError(
                "wrong_server", f"this phone belongs to {self.server}, not to {server}"
            )
        return server

    def _origin(self, server: str) -> str:
        return self.origin or _origin_of(server)

    @staticmethod
    def _check_rp_id(rp_id: Any, server: str) -> None:
        host = urlsplit(server).hostname or ""
        if not _rp_id_fits(rp_id, host):
            raise PhoneError("rp_id_mismatch", f"RP ID {rp_id!r} does not belong to {host}")

    # -- bindings of scanned logins ----------------------------------------------------------
    def _load_bindings(self) -> dict[str, dict[str, Any]]:
        try:
            document = json.loads(self.bindings_file.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return {}
        if not isinstance(document, dict):
            return {}
        now = time.time()
        return {
            login_id: entry
            for login_id, entry in document.items()
            if isinstance(entry, dict)
            and isinstance(entry.get("binding"), str)
            and isinstance(entry.get("expires_at"), int | float)
            and entry["expires_at"] > now
        }

    def _remember_binding(self, login_id: str, binding: str, expires_at: Any) -> None:
        bindings = self._load_bindings()
        if bindings.get(login_id, {}).get("binding") == binding:
            return
        expiry = expires_at if isinstance(expires_at, int | float) else time.time() + 600
        bindings[login_id] = {"binding": binding, "expires_at": expiry}
        _write_private_json(self.bindings_file, bindings)

    def _forget_binding(self, login_id: str) -> None:
        bindings = self._load_bindings()
        if bindings.pop(login_id, None) is not None:
            _write_private_json(self.bindings_file, bindings)


def _warning_text(view: LoginView) -> str:
    messages = [str(w.get("message", "")) for w in view.warnings if w.get("message")]
    return " ".join(messages) or "the computer is in another network than this phone"


def _answer(response: Response, expect: int) -> dict[str, Any]:
    """The JSON object of a successful answer; a refusal becomes a ``PhoneError``."""
    try:
        body = response.json()
    except ValueError:
        body = None
    status = response.status_code
    if status == expect and isinstance(body, dict):
        return body
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        raise PhoneError(body["error"], str(body.get("error_description") or ""), status)
    raise PhoneError("invalid_response", f"unexpected answer with HTTP status {status}", status)


def _write_private_json(path: Path, document: Any) -> None:
    """Write atomically with mode 0600: the bindings are secrets, like the keys."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2)
            handle.write("\n")
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
