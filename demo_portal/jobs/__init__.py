"""Bewerberportal: the city's job portal, where applicants sign in with Bürger-ID."""

from flask_babel import lazy_gettext as _l

from ..portal import Portal
from .models import Base
from .views import bp

__all__ = ["PORTAL"]

PORTAL = Portal(
    kind="jobs",
    name=_l("Job portal"),
    tagline=_l("City of Dortmund · Careers at the city administration"),
    scope="openid profile email birthdate",
    blueprint=bp,
    metadata=Base.metadata,
)
