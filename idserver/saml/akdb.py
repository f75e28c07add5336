"""The AKDB ``AuthenticationRequest`` extension of BundID AuthnRequests.

Carried in the AuthnRequest's ``samlp:Extensions`` (SAML 2.0 Core §3.2.1)::

    <akdb:AuthenticationRequest xmlns:akdb="https://www.akdb.de/request/2018/09" Version="2">
      <akdb:RequestedAttributes>
        <akdb:RequestedAttribute Name="urn:oid:2.5.4.42" RequiredAttribute="true"/>
      </akdb:RequestedAttributes>
      <akdb:DisplayInformation>
        <classic-ui:Version xmlns:classic-ui="https://www.akdb.de/request/2018/09/classic-ui/v1">
          <classic-ui:OrganizationDisplayName>Stadt Musterstadt</classic-ui:OrganizationDisplayName>
          <classic-ui:OnlineServiceId>…</classic-ui:OnlineServiceId>
        </classic-ui:Version>
      </akdb:DisplayInformation>
    </akdb:AuthenticationRequest>

Only the extensions of the request element itself are read (never a nested copy), from the
document whose signature was checked.

``OnlineServiceId`` names the SP's online service (Onlinedienst) the login is for, as assigned
by the BundID operator (e.g. ``BMI-4711``). It is kept as sent, recorded in the audit log and
never shown to the citizen (there is no display name for it); a value that is not a short
identifier (``online_service_id_valid``) has the request refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from xml.etree.ElementTree import Element  # noqa: S405 -- types only; parsing is defusedxml's

from defusedxml.ElementTree import fromstring
from defusedxml.ElementTree import tostring

__all__ = ["AKDB_NS", "AkdbRequest", "online_service_id_valid", "read_akdb_request"]

AKDB_NS = "https://www.akdb.de/request/2018/09"
CLASSIC_UI_NS = "https://www.akdb.de/request/2018/09/classic-ui/v1"
PROTOCOL_NS = "urn:oasis:names:tc:SAML:2.0:protocol"
DISPLAY_NAME_LENGTH = 100
# Letters, digits and . _ : - (identifiers such as "BMI-4711" or a LeiKa number), at most 64.
ONLINE_SERVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


@dataclass(frozen=True)
class AkdbRequest:
    requested: tuple[str, ...] = ()  # attribute names, in the request's order
    required: tuple[str, ...] = ()  # those with RequiredAttribute="true"
    organization_display_name: str = ""
    online_service_id: str = ""  # as sent (only surrounding white space removed); "": none


def online_service_id_valid(value: str) -> bool:
    """None sent, or a short identifier (``ONLINE_SERVICE_ID``): nothing else reaches the
    audit log."""
    return not value or ONLINE_SERVICE_ID.fullmatch(value) is not None


def _text(element: Element | None) -> str:
    return " ".join((element.text or "").split()) if element is not None else ""


def _content(element: Element | None) -> str:
    """The element's content as sent, nested markup included (so that it is refused, not
    dropped), without surrounding white space."""
    if element is None:
        return ""
    nested = "".join(tostring(child, encoding="unicode") for child in element)
    return ((element.text or "") + nested).strip()


def read_akdb_request(xml: str | bytes) -> AkdbRequest:
    """What the AKDB extension of the AuthnRequest ``xml`` asks for (empty if it has none)."""
    root = fromstring(xml)
    extension = root.find(f"{{{PROTOCOL_NS}}}Extensions/{{{AKDB_NS}}}AuthenticationRequest")
    if extension is None:
        return AkdbRequest()
    requested: list[str] = []
    required: list[str] = []
    for attribute in extension.iterfind(
        f"{{{AKDB_NS}}}RequestedAttributes/{{{AKDB_NS}}}RequestedAttribute"
    ):
        name = (attribute.get("Name") or "").strip()
        if not name or name in requested:
            continue
        requested.append(name)
        if (attribute.get("RequiredAttribute") or "").strip().lower() in ("true", "1"):
            required.append(name)
    version = extension.find(f"{{{AKDB_NS}}}DisplayInformation/{{{CLASSIC_UI_NS}}}Version")
    display, service = "", ""
    if version is not None:
        display = _text(version.find(f"{{{CLASSIC_UI_NS}}}OrganizationDisplayName"))
        service = _content(version.find(f"{{{CLASSIC_UI_NS}}}OnlineServiceId"))
    return AkdbRequest(
        requested=tuple(requested),
        required=tuple(required),
        organization_display_name=display[:DISPLAY_NAME_LENGTH],
        online_service_id=service,
    )
