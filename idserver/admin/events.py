"""Audit events as sentences for the clerk console's audit viewer.

The log itself keeps machine names, ids and JSON (``idserver.audit``); a clerk reads one
translated sentence per entry with the fields that matter, the raw entry behind a disclosure.
An event type or clerk action without a sentence here is shown by its machine name.
"""

from __future__ import annotations

from typing import Any

from flask_babel import LazyString
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from ..audit.models import AuditEvent
from ..crosslogin.models import DenyReason

__all__ = ["EVENT_LABELS", "describe_actor", "describe_event"]

# Short names for the event filter.
EVENT_LABELS: dict[str, LazyString] = {
    "activation_issued": _l("Activation code issued"),
    "enrolment": _l("Device registered"),
    "login_approved": _l("Login confirmed"),
    "login_denied": _l("Login refused"),
    "login_expired": _l("Login expired"),
    "token_issued": _l("Tokens issued"),
    "device_revoked": _l("Device removed"),
    "device_renamed": _l("Device renamed"),
    "device_suspended": _l("Device blocked for safety"),
    "devices_revoked_with_code": _l("All devices blocked with revocation code"),
    "revocation_codes_replaced": _l("Revocation codes replaced"),
    "consent_withdrawn": _l("Consent withdrawn"),
    "clerk_action": _l("Clerk action"),
    "clerk_added": _l("Clerk added"),
    "clerk_disabled": _l("Clerk disabled"),
    "clerk_role_changed": _l("Clerk role changed"),
    "client_added": _l("Service registered"),
    "client_updated": _l("Service changed"),
    "client_disabled": _l("Service disabled"),
    "client_enabled": _l("Service enabled"),
    "client_secret_rotated": _l("Service secret replaced"),
    "client_deleted": _l("Service deleted"),
    "key_rotated": _l("Signing key rotated"),
    "key_retired": _l("Signing key retired"),
    "residents_purged": _l("Deleted residents erased"),
    "token_revoked": _l("Token revoked"),
    "refresh_token_reused": _l("Refresh token used twice"),
    "logout_delivered": _l("Logout delivered to a service"),
    "logout_delivery_failed": _l("Logout not delivered"),
    "device_grants_ended": _l("Device's sessions and tokens ended"),
    "saml_sp_added": _l("SAML service registered"),
    "saml_sp_removed": _l("SAML service removed"),
    "saml_assertion_issued": _l("SAML login answered"),
    "saml_logout_delivered": _l("SAML logout delivered to a service"),
    "saml_logout_delivery_failed": _l("SAML logout not delivered"),
    "keys_imported": _l("Signing keys imported"),
    "maintenance_purged": _l("Expired data purged"),
    "audit_checkpoint": _l("Audit checkpoint"),
}

# One sentence per event type; the placeholders are filled from the entry's data.
EVENT_SENTENCES: dict[str, LazyString] = {
    "activation_issued": _l("An activation code was issued."),
    "enrolment": _l("Device no. %(credential_id)s was registered (%(kind)s)."),
    "login_approved": _l("Login to %(client_id)s confirmed with device no. %(credential_id)s."),
    "login_denied": _l("Login to %(client_id)s refused: %(reason)s."),
    "login_expired": _l("Login to %(client_id)s expired without being confirmed."),
    "token_issued": _l("Tokens were issued to %(client_id)s."),
    "device_revoked": _l("Device no. %(credential_id)s was removed."),
    "device_renamed": _l("Device no. %(credential_id)s was renamed."),
    "device_suspended": _l(
        "Device no. %(credential_id)s was blocked for safety: its signature counter went back."
    ),
    "devices_revoked_with_code": _l(
        "All devices were blocked with the revocation code (%(credentials_revoked)s devices)."
    ),
    "revocation_codes_replaced": _l(
        "The citizen replaced their revocation codes (%(codes_replaced)s) with one new code."
    ),
    "consent_withdrawn": _l("Consent for %(client_id)s was withdrawn."),
    "clerk_added": _l("A clerk account was added."),
    "clerk_disabled": _l("A clerk account was disabled."),
    "clerk_role_changed": _l("A clerk's role was changed to %(role)s."),
    "client_added": _l("The service %(client_id)s (%(name)s) was registered."),
    "client_updated": _l("The registration of the service %(client_id)s was changed."),
    "client_disabled": _l(
        "The service %(client_id)s was disabled; %(tokens_revoked)s access tokens were revoked."
    ),
    "client_enabled": _l("The service %(client_id)s was enabled again."),
    "client_secret_rotated": _l("The service %(client_id)s was given a new client secret."),
    "client_deleted": _l(
        "The service %(client_id)s was deleted; %(tokens_revoked)s access tokens were revoked."
    ),
    "key_rotated": _l("New signing key %(kid)s is in use."),
    "key_retired": _l("Signing key %(kid)s was retired."),
    "residents_purged": _l(
        "%(count)s deleted residents were erased after the retention period of %(retention_days)s "
        "days."
    ),
    "token_revoked": _l("A token of %(client_id)s was revoked."),
    "refresh_token_reused": _l(
        "A used refresh token of %(client_id)s was presented again; its whole family was revoked."
    ),
    "logout_delivered": _l("The logout was delivered to %(client_id)s (attempt %(attempts)s)."),
    "logout_delivery_failed": _l(
        "The logout could not be delivered to %(client_id)s after %(attempts)s attempts."
    ),
    "device_grants_ended": _l(
        "The sessions and tokens of the resident's devices were ended (%(reason)s)."
    ),
    "saml_sp_added": _l("The SAML service %(entity_id)s was registered."),
    "saml_sp_removed": _l("The SAML service %(entity_id)s was removed."),
    "saml_assertion_issued": _l(
        "A signed SAML answer was sent to service no. %(sp_id)s (online service "
        "%(online_service_id)s)."
    ),
    "saml_logout_delivered": _l(
        "The SAML logout was delivered to service no. %(sp_id)s (attempt %(attempts)s)."
    ),
    "saml_logout_delivery_failed": _l(
        "The SAML logout could not be delivered to service no. %(sp_id)s after %(attempts)s "
        "attempts."
    ),
    "keys_imported": _l("Signing keys were imported from files."),
    "maintenance_purged": _l(
        "Expired data were deleted (kept %(purge_after_hours)s hours after they ended)."
    ),
    "audit_checkpoint": _l("A checkpoint of the audit log was signed."),
}

# ``clerk_action`` events, one sentence per action.
CLERK_ACTIONS: dict[str, LazyString] = {
    "search": _l("Searched residents (%(fields)s): %(total)s found."),
    "view_resident": _l("Opened the resident's record."),
    "register": _l("Registered the resident."),
    "issue_letter": _l("Issued an activation letter."),
    "revoke_devices": _l("Revoked all the resident's devices."),
    "delete_resident": _l("Marked the resident deleted."),
    "view_audit": _l("Viewed the audit log."),
}

SEARCH_FIELDS = {"name": _l("name"), "postcode": _l("postcode"), "birthdate": _l("date of birth")}
DENY_REASONS = {
    DenyReason.CANCELLED: _l("cancelled at the computer"),
    DenyReason.DENIED: _l("declined on the phone"),
    DenyReason.WRONG_NUMBER: _l("wrong number typed"),
    DenyReason.OTHER_NETWORK: _l("phone and computer in different networks"),
    DenyReason.LEVEL_TOO_LOW: _l("assurance level too low for the service"),
    DenyReason.OTHER_ACCOUNT: _l("confirmed by another resident than the service named"),
}
DEVICE_KINDS = {"app": _l("Bürger-ID app"), "passkey": _l("passkey")}


class _Fields(dict[str, Any]):
    """The entry's data for ``%`` formatting: a field the entry lacks reads as a dash."""

    def __missing__(self, key: str) -> str:
        return "–"


def describe_event(entry: AuditEvent) -> str:
    """One sentence for the entry, in the current locale."""
    data = _Fields(entry.data or {})
    if entry.event == "clerk_action":
        sentence = CLERK_ACTIONS.get(str(data.get("action")))
        if sentence is None:
            return _("Clerk action: %(action)s", action=data["action"])
        if "fields" in data:
            data["fields"] = ", ".join(
                str(SEARCH_FIELDS.get(name, name)) for name in data.get("fields") or []
            )
        return str(sentence) % data
    sentence = EVENT_SENTENCES.get(entry.event)
    if sentence is None:
        return entry.event
    if "reason" in data:
        data["reason"] = str(DENY_REASONS.get(data["reason"], data["reason"]))
    if "kind" in data:
        data["kind"] = str(DEVICE_KINDS.get(data["kind"], data["kind"]))
    return str(sentence) % data


def describe_actor(actor: str) -> str:
    """``clerk:<id>``, ``citizen:<id>``, ``client:<id>``, ``operator``, … as words."""
    kind, _sep, ident = actor.partition(":")
    if kind == "clerk":
        return _("Clerk %(id)s", id=ident[:8])
    if kind == "citizen":
        return _("The resident")
    if kind == "client":
        return _("Service %(id)s", id=ident)
    words = {
        "operator": _("Operator (command line)"),
        "system": _("Bürger-ID (automatic)"),
        "phone": _("The phone"),
        "desktop": _("The computer"),
    }
    return words.get(actor, actor)
