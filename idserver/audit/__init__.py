"""The tamper-evident audit log: a hash chain with signed checkpoints."""

from .service import Problem
from .service import export_events
from .service import record_event
from .service import verify_chain
from .service import verify_since_checkpoint
from .service import write_checkpoint

__all__ = [
    "Problem",
    "export_events",
    "record_event",
    "verify_chain",
    "verify_since_checkpoint",
    "write_checkpoint",
]
