"""Erasing residents' personal data once the retention period after their deletion is over.

The rows are deleted; the database cascades to their devices, codes, sessions and tokens, and
sets login transactions' resident to NULL. Audit entries hold ids only and are kept, so the
hash chain stays complete and ``idserver audit verify`` still passes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import current_app
from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import select

from .. import models  # noqa: F401 -- every table, so the dependents below are complete
from ..audit import record_event
from ..citizens.models import Citizen
from ..db import Base
from ..db import db
from ..db import utcnow

__all__ = ["purge_deleted_residents"]


def _dependents() -> dict[str, Any]:
    """Every column whose rows the database deletes together with their resident."""
    return {
        fk.parent.table.name: fk.parent
        for table in Base.metadata.sorted_tables
        for fk in table.foreign_keys
        if fk.column.table is Citizen.__table__ and (fk.ondelete or "").upper() == "CASCADE"
    }


def purge_deleted_residents(*, now: dt.datetime | None = None) -> dict[str, Any]:
    """Delete every resident marked deleted more than ``RETENTION_DAYS`` ago; returns counts."""
    days = current_app.config["RETENTION_DAYS"]
    cutoff = (now or utcnow()) - dt.timedelta(days=days)
    session = db.session
    expired = select(Citizen.id).where(Citizen.deleted_at.is_not(None), Citizen.deleted_at < cutoff)
    count = session.scalar(select(func.count()).select_from(expired.subquery())) or 0
    report: dict[str, Any] = {
        "residents": count,
        "retention_days": days,
        "deleted_before": cutoff.isoformat(),
    }
    for name, column in sorted(_dependents().items()):
        report[name] = session.scalar(
            select(func.count()).select_from(column.table).where(column.in_(expired))
        )
    if count:
        deleted = session.execute(delete(Citizen).where(Citizen.id.in_(expired)))
        count = report["residents"] = deleted.rowcount  # type: ignore[attr-defined]
        record_event(
            "residents_purged",
            actor="operator",
            count=count,
            retention_days=days,
            deleted_before=report["deleted_before"],
        )
    session.commit()
    return report
