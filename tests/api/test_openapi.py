"""The OpenAPI document of ``/api/v1``: valid, complete, and true to what the server answers.

Every answer the phone API gives in a real flow, refusals included, is validated against the
schema the document promises for that operation and status (JSON Schema 2020-12, which is the
dialect of OpenAPI 3.1).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import quote
from urllib.parse import urlsplit

import jsonschema
import pytest
from harness import Phone
from harness import desktop_status
from referencing import Registry
from referencing import Resource
from referencing.jsonschema import DRAFT202012

from idserver import errors
from idserver.citizens.service import issue_activation_code
from idserver.crosslogin.service import canonical_json
from idserver.phone.authenticator import SoftAuthenticator

DOCUMENT_PATH = Path(__file__).parents[2] / "idserver" / "api" / "openapi.json"
DOCUMENT_URI = "urn:buergerid:api:v1:openapi"
PREFIX = "/api/v1"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
# Answered for URLs and methods, not by an operation: listed in ErrorCode, used by no operation.
URL_LEVEL_CODES = {"not_found", "method_not_allowed", "server_error"}
SOURCES_OF_API_ERRORS = [
    "idserver/api/views.py",
    "idserver/citizens/errors.py",
    "idserver/citizens/service.py",
    "idserver/crosslogin/service.py",
    "idserver/passkeys/ceremonies.py",
    "idserver/passkeys/errors.py",
    "idserver/passkeys/service.py",
]
# Raised only by clerk and CLI functions in those modules (registering residents, issuing codes).
NOT_REACHABLE_FROM_API = {"invalid_citizen", "invalid_import"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return json.loads(DOCUMENT_PATH.read_text(encoding="utf-8"))


def _pointer(*parts: str) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def _resolve(document: dict[str, Any], node: dict[str, Any], pointer: str) -> tuple[Any, str]:
    """Follow a local ``$ref`` (if any); returns the node and its JSON pointer."""
    while "$ref" in node:
        target = node["$ref"]
        assert target.startswith("#/"), target
        pointer = target[1:]
        node = document
        for part in pointer[1:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node, pointer


def _validator(document: dict[str, Any], pointer: str) -> jsonschema.Draft202012Validator:
    resource = Resource(contents=document, specification=DRAFT202012)
    registry = Registry().with_resource(DOCUMENT_URI, resource)
    schema = {"$ref": f"{DOCUMENT_URI}#{quote(pointer)}"}
    return jsonschema.Draft202012Validator(schema, registry=registry)


def check(document: dict[str, Any], method: str, path: str, response: Any) -> Any:
    """Assert ``response`` is documented for ``method path`` and matches its schema."""
    operation = document["paths"][path][method]
    responses = operation["responses"]
    status = str(response.status_code)
    key = status if status in responses else status[0] + "XX"
    assert key in responses, f"{method.upper()} {path} answered undocumented {status}"
    spec, pointer = _resolve(
        document, responses[key], _pointer("paths", path, method, "responses", key)
    )
    assert response.mimetype in spec["content"], (status, response.mimetype)
    schema_pointer = pointer + _pointer("content", response.mimetype, "schema")
    errors_found = sorted(_validator(document, schema_pointer).iter_errors(response.json), key=str)
    assert not errors_found, f"{method.upper()} {path} {status}: " + "; ".join(
        f"{list(e.absolute_path)}: {e.message}" for e in errors_found
    )
    if "Cache-Control" in spec.get("headers", {}):
        assert response.headers.get("Cache-Control") == "no-store"
    return response.json


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _login(client: Any, relying_party: Any) -> tuple[str, dict[str, Any]]:
    login_id = relying_party.start_login(client)
    return login_id, desktop_status(client, login_id).json


def _frame(phone_url: str) -> dict[str, str]:
    query = parse_qs(urlsplit(phone_url).query)
    return {"t": query["t"][0], "h": query["h"][0]}


# -- the document itself --------------------------------------------------------------------
def test_document_is_valid_openapi_3_1(document):
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(document)
    assert document["openapi"].startswith("3.1.")


def test_every_reference_resolves_and_every_path_parameter_is_declared(document):
    text = json.dumps(document)
    for target in set(re.findall(r'"\$ref": "(#[^"]+)"', text)):
        _resolve(document, {"$ref": target}, "")
    for path, item in document["paths"].items():
        names = set(re.findall(r"{(\w+)}", path))
        for method, operation in item.items():
            declared = {
                p["name"]
                for p in (_resolve(document, p, "")[0] for p in operation.get("parameters", []))
                if p["in"] == "path"
            }
            assert declared == names, (method, path)


def test_operation_ids_are_unique(document):
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


def _error_codes(document: dict[str, Any]) -> set[str]:
    return {choice["const"] for choice in document["components"]["schemas"]["ErrorCode"]["oneOf"]}


def _codes_per_operation(document: dict[str, Any]) -> dict[str, set[str]]:
    used: dict[str, set[str]] = {}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if not status.startswith("4"):
                    continue
                spec, _ = _resolve(document, response, "")
                schema = spec["content"]["application/json"]["schema"]
                assert schema["allOf"] == [{"$ref": "#/components/schemas/Error"}], (path, status)
                codes = set(schema["properties"]["error"]["enum"])
                used.setdefault(f"{method.upper()} {path}", set()).update(codes)
    return used


def test_every_error_code_of_an_operation_is_a_documented_error_code(document):
    known = _error_codes(document)
    for operation, codes in _codes_per_operation(document).items():
        assert codes <= known, (operation, codes - known)
    used = set().union(*_codes_per_operation(document).values())
    assert known - used == URL_LEVEL_CODES


def test_every_error_code_the_services_raise_is_documented(document):
    root = Path(__file__).parents[2]
    raised = {
        errors.IdServerError.error,
        errors.ActivationRejected.error,
        errors.EnrolmentRejected.error,
        errors.LoginRejected.error,
        errors.NotFound.error,
    }
    for source in SOURCES_OF_API_ERRORS:
        text = (root / source).read_text(encoding="utf-8")
        raised |= set(re.findall(r'error ?= ?"(\w+)"', text))
    assert raised - NOT_REACHABLE_FROM_API <= _error_codes(document)


def test_every_api_route_is_documented_with_its_methods_and_vice_versa(app, document):
    assert [server["url"] for server in document["servers"]] == [PREFIX]
    registered: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(PREFIX + "/"):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule[len(PREFIX) :])
        methods = {m.lower() for m in (rule.methods or set())} - {"head", "options"}
        registered.setdefault(path, set()).update(methods)
    documented = {
        path: {method for method in item if method in HTTP_METHODS}
        for path, item in document["paths"].items()
    }
    assert registered == documented


def test_served_document_is_this_file(client, document):
    response = client.get(f"{PREFIX}/openapi.json")
    assert response.status_code == 200
    assert check(document, "get", "/openapi.json", response) == document


# -- real answers of a whole flow -----------------------------------------------------------
def test_enrolment_answers_match_the_document(document, phone, activation):
    activation_id, code = activation
    begun = phone.client.post(
        f"{PREFIX}/enrolments", json={"activation_id": activation_id, "code": code}
    )
    started = check(document, "post", "/enrolments", begun)
    assert begun.status_code == 200
    credential = phone.authenticator.create_credential(started["options"], origin=phone.origin)
    check_request(document, "EnrolmentCompletion", {"credential": credential, "name": "Tel"})
    finished = phone.client.post(
        f"{PREFIX}/enrolments/{started['enrolment_id']}",
        json={"credential": credential, "name": "Tel"},
    )
    assert finished.status_code == 201
    body = check(document, "post", "/enrolments/{enrolment_id}", finished)
    assert body["device"]["name"] == "Tel"


def test_native_app_enrolment_matches_the_document(app, document, phone, activation):
    origin = "android:apk-key-hash:" + base64.urlsafe_b64encode(b"\x07" * 32).rstrip(b"=").decode()
    app.config["ALLOWED_ORIGINS"] = [origin]
    activation_id, code = activation
    begun = phone.client.post(
        f"{PREFIX}/enrolments", json={"activation_id": activation_id, "code": code}
    )
    credential = phone.authenticator.create_credential(begun.json["options"], origin=origin)
    finished = phone.client.post(
        f"{PREFIX}/enrolments/{begun.json['enrolment_id']}", json={"credential": credential}
    )
    assert finished.status_code == 201
    assert (
        check(document, "post", "/enrolments/{enrolment_id}", finished)["device"]["kind"] == "app"
    )


def check_request(document: dict[str, Any], schema: str, body: Any) -> None:
    """Requests the reference phone sends fit the documented request schemas too."""
    pointer = _pointer("components", "schemas", schema)
    _validator(document, pointer).validate(body)


def test_login_answers_match_the_document(document, client, relying_party, enrolled_phone):
    phone = enrolled_phone
    login_id, status = _login(client, relying_party)
    scanned = phone.client.post(
        f"{PREFIX}/logins/{login_id}/scan", json=_frame(status["phone_url"])
    )
    assert scanned.status_code == 200
    scan = check(document, "post", "/logins/{login_id}/scan", scanned)
    binding = scan["binding"]

    again = phone.client.post(f"{PREFIX}/logins/{login_id}/scan", json={"binding": binding})
    assert check(document, "post", "/logins/{login_id}/scan", again)["binding"] == binding

    read = phone.client.get(f"{PREFIX}/logins/{login_id}", headers={"X-Login-Binding": binding})
    assert read.status_code == 200
    assert check(document, "get", "/logins/{login_id}", read)["context"] == scan["context"]

    number = status["number"]
    issued = phone.challenge(login_id, binding, number)
    assert issued.status_code == 200
    challenge = check(document, "post", "/logins/{login_id}/challenge", issued)
    # the derivation the document and docs/phone-api.md promise
    inputs = challenge["challenge_inputs"]
    assert inputs["context"] == scan["context"]
    message = canonical_json({"context": inputs["context"], "number": number})
    expected = hashlib.sha256(_b64decode(inputs["nonce"]) + message).digest()
    assert _b64decode(challenge["options"]["challenge"]) == expected

    credential = phone.authenticator.get_assertion(challenge["options"], origin=phone.origin)
    request = {"binding": binding, "number": number, "credential": credential}
    check_request(document, "ApproveRequest", request)
    approved = phone.client.post(f"{PREFIX}/logins/{login_id}/approve", json=request)
    assert approved.status_code == 200
    assert check(document, "post", "/logins/{login_id}/approve", approved) == {"status": "approved"}


def test_deny_answer_matches_the_document(document, client, relying_party, enrolled_phone):
    login_id, status = _login(client, relying_party)
    _, scanned = enrolled_phone.scan(status["phone_url"])
    denied = enrolled_phone.client.post(
        f"{PREFIX}/logins/{login_id}/deny", json={"binding": scanned.json["binding"]}
    )
    assert denied.status_code == 200
    assert check(document, "post", "/logins/{login_id}/deny", denied) == {"status": "denied"}


# -- refusals: each status and code is documented for the operation that answered it --------
def _refused(document, method, path, response, status, error):
    assert (response.status_code, response.json.get("error")) == (status, error), response.json
    check(document, method, path, response)


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"data": "activation", "content_type": "text/plain"}, 415),
        ({"json": ["not", "an", "object"]}, 400),
        ({"data": "x" * (300 * 1024), "content_type": "application/json"}, 413),
    ],
)
def test_malformed_bodies_are_documented(document, phone, kwargs, status):
    response = phone.client.post(f"{PREFIX}/enrolments", **kwargs)
    _refused(document, "post", "/enrolments", response, status, "invalid_request")


def test_activation_refusals_are_documented(app, document, phone, activation, citizen):
    activation_id, code = activation
    path = "/enrolments"
    wrong = phone.client.post(
        f"{PREFIX}{path}", json={"activation_id": activation_id, "code": "AAAA-AAAA"}
    )
    _refused(document, "post", path, wrong, 400, "invalid_activation_code")

    app.config["ACTIVATION_MAX_ATTEMPTS"] = 1
    blocked = phone.client.post(
        f"{PREFIX}{path}", json={"activation_id": activation_id, "code": code}
    )
    _refused(document, "post", path, blocked, 429, "too_many_attempts")

    app.config["ACTIVATION_TTL_DAYS"] = 0
    with app.app_context():
        record, fresh_code = issue_activation_code(citizen.id)
    expired = phone.client.post(
        f"{PREFIX}{path}", json={"activation_id": record.id, "code": fresh_code}
    )
    _refused(document, "post", path, expired, 400, "code_expired")


def test_used_code_is_documented(document, enrolled_phone, activation):
    activation_id, code = activation
    again = enrolled_phone.client.post(
        f"{PREFIX}/enrolments", json={"activation_id": activation_id, "code": code}
    )
    _refused(document, "post", "/enrolments", again, 400, "code_used")


def test_enrolment_refusals_are_documented(app, document, phone, activation):
    activation_id, code = activation
    path = "/enrolments/{enrolment_id}"

    def begin() -> dict[str, Any]:
        response = phone.client.post(
            f"{PREFIX}/enrolments", json={"activation_id": activation_id, "code": code}
        )
        assert response.status_code == 200
        return response.json

    started = begin()
    credential = phone.authenticator.create_credential(started["options"], origin=phone.origin)
    url = f"{PREFIX}/enrolments/{started['enrolment_id']}"
    long_name = phone.client.post(url, json={"credential": credential, "name": "x" * 61})
    _refused(document, "post", path, long_name, 400, "invalid_name")

    unknown = phone.client.post(f"{PREFIX}/enrolments/nope", json={"credential": credential})
    _refused(document, "post", path, unknown, 400, "enrolment_rejected")

    foreign = phone.authenticator.create_credential(
        begin()["options"], origin="https://evil.example"
    )
    started = begin()
    bad_origin = phone.client.post(
        f"{PREFIX}/enrolments/{started['enrolment_id']}", json={"credential": foreign}
    )
    _refused(document, "post", path, bad_origin, 400, "enrolment_rejected")

    app.config["ATTESTATION_POLICY"] = "allowlist"
    app.config["AAGUID_ALLOWLIST"] = ["00000000-0000-0000-0000-000000000001"]
    started = begin()
    credential = phone.authenticator.create_credential(started["options"], origin=phone.origin)
    untrusted = phone.client.post(
        f"{PREFIX}/enrolments/{started['enrolment_id']}", json={"credential": credential}
    )
    _refused(document, "post", path, untrusted, 400, "attestation_not_trusted")


def test_scan_refusals_are_documented(app, document, client, relying_party, phone, tmp_path):
    path = "/logins/{login_id}/scan"
    missing = phone.client.post(f"{PREFIX}/logins/{'x' * 32}/scan", json={"t": "1", "h": "x"})
    _refused(document, "post", path, missing, 404, "login_not_found")

    login_id, status = _login(client, relying_party)
    frame = _frame(status["phone_url"])
    stale = phone.client.post(f"{PREFIX}/logins/{login_id}/scan", json={"t": "1", "h": frame["h"]})
    _refused(document, "post", path, stale, 400, "qr_stale")

    assert phone.client.post(f"{PREFIX}/logins/{login_id}/scan", json=frame).status_code == 200
    other = Phone(app.test_client(), SoftAuthenticator(path=tmp_path / "other.json"))
    second = other.client.post(f"{PREFIX}/logins/{login_id}/scan", json=frame)
    _refused(document, "post", path, second, 400, "already_scanned")

    app.config["LOGIN_TTL_SECONDS"] = 0
    login_id, status = _login(client, relying_party)
    late = phone.client.post(f"{PREFIX}/logins/{login_id}/scan", json=_frame(status["phone_url"]))
    _refused(document, "post", path, late, 400, "login_expired")


def test_login_refusals_are_documented(document, client, relying_party, enrolled_phone):
    phone = enrolled_phone
    login_id, status = _login(client, relying_party)
    _, scanned = phone.scan(status["phone_url"])
    binding = scanned.json["binding"]
    number = status["number"]
    base = f"{PREFIX}/logins/{login_id}"

    unbound = phone.client.get(base, headers={"X-Login-Binding": "not-mine"})
    _refused(document, "get", "/logins/{login_id}", unbound, 400, "not_bound")

    malformed = phone.challenge(login_id, binding, "5")
    _refused(document, "post", "/logins/{login_id}/challenge", malformed, 400, "invalid_number")

    early = phone.client.post(
        f"{base}/approve", json={"binding": binding, "number": number, "credential": {}}
    )
    _refused(document, "post", "/logins/{login_id}/approve", early, 400, "no_challenge")

    issued = phone.challenge(login_id, binding, number).json
    garbage = phone.client.post(
        f"{base}/approve", json={"binding": binding, "number": number, "credential": {"x": 1}}
    )
    _refused(document, "post", "/logins/{login_id}/approve", garbage, 400, "login_rejected")

    issued = phone.challenge(login_id, binding, number).json
    assertion = phone.authenticator.get_assertion(issued["options"], origin=phone.origin)
    stranger = base64.urlsafe_b64encode(b"\x01" * 32).rstrip(b"=").decode()
    assertion = {**assertion, "id": stranger, "rawId": stranger}
    unknown = phone.client.post(
        f"{base}/approve", json={"binding": binding, "number": number, "credential": assertion}
    )
    _refused(document, "post", "/logins/{login_id}/approve", unknown, 400, "unknown_device")

    wrong = "11" if number != "11" else "12"
    denied = phone.challenge(login_id, binding, wrong)
    _refused(document, "post", "/logins/{login_id}/challenge", denied, 400, "wrong_number")

    ended = phone.client.post(f"{base}/deny", json={"binding": binding})
    _refused(document, "post", "/logins/{login_id}/deny", ended, 400, "login_ended")
    read = phone.client.get(base, headers={"X-Login-Binding": binding})
    _refused(document, "get", "/logins/{login_id}", read, 400, "login_ended")


def test_url_level_refusals_use_the_error_schema(document, client):
    validator = _validator(document, _pointer("components", "schemas", "Error"))
    for response, error in (
        (client.get(f"{PREFIX}/enrolments"), "method_not_allowed"),
        (client.get(f"{PREFIX}/nothing-here"), "not_found"),
    ):
        validator.validate(response.json)
        assert response.json["error"] == error


def test_proximity_refusals_and_warnings_are_documented(
    app, document, client, relying_party, enrolled_phone
):
    phone = enrolled_phone
    phone.client.environ_base["REMOTE_ADDR"] = "198.51.100.23"  # not the desktop's 127.0.0.1
    login_id, status = _login(client, relying_party)
    scanned = phone.client.post(
        f"{PREFIX}/logins/{login_id}/scan", json=_frame(status["phone_url"])
    )
    scan = check(document, "post", "/logins/{login_id}/scan", scanned)
    assert scan["context"]["same_network"] is False and scan["warnings"]
    app.config["PROXIMITY_POLICY"] = "deny"
    issued = phone.challenge(login_id, scan["binding"], status["number"])
    _refused(document, "post", "/logins/{login_id}/challenge", issued, 403, "proximity_required")

    login_id, status = _login(client, relying_party)
    refused = phone.client.post(
        f"{PREFIX}/logins/{login_id}/scan", json=_frame(status["phone_url"])
    )
    _refused(document, "post", "/logins/{login_id}/scan", refused, 403, "proximity_required")
