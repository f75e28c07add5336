"""Hundesteuer-Anmeldung: registering a dog for the dog tax, signed in with Bürger-ID over SAML."""

from flask_babel import lazy_gettext as _l

from ..portal import Portal
from .models import Base
from .views import bp

__all__ = ["PORTAL"]

PORTAL = Portal(
    kind="dogtax",
    name=_l("Dog tax registration"),
    tagline=_l("City of Dortmund · Tax office · SAML 2.0"),
    scope="SAML: givenName, surname, birthDate, postalAddress, postalCode, localityName",
    blueprint=bp,
    metadata=Base.metadata,
    protocol="saml",
    display_name="Stadt Dortmund – Hundesteuer",
)
