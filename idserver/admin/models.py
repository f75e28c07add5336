"""Bookkeeping of the periodic maintenance jobs (the purge), shared by every instance."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import String
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from ..db import Base
from ..db import UTCDateTime


class MaintenanceRun(Base):
    """One row per job: who holds it (a lease, where the database has no advisory locks) and
    when it last finished, so the instances together run it once per interval."""

    __tablename__ = "maintenance_runs"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(64))
    leased_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
