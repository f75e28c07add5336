"""Bewohnerparkausweis: a resident parking permit for residents of a parking zone."""

from flask_babel import lazy_gettext as _l

from ..portal import Portal
from .models import Base
from .service import init_app
from .views import bp

__all__ = ["PORTAL"]

PORTAL = Portal(
    kind="parking",
    name=_l("Resident parking permit"),
    tagline=_l("City of Dortmund · Road traffic office"),
    scope="openid profile address",
    blueprint=bp,
    metadata=Base.metadata,
    init_app=init_app,
)
