"""The animated QR code: every step carries a new MAC, so a relayed screenshot goes stale.

As in Sweden's BankID, the desktop derives each frame itself from a per-login key, so the
server renders nothing per second: ``h = base64url(HMAC-SHA256(k, str(t))[:16])`` where
``k = HMAC-SHA256(server secret, "qr\\0" || login id)`` and ``t`` counts QR steps since the
Unix epoch. The phone side accepts a frame no older than ``QR_MAX_AGE_SECONDS``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time

__all__ = ["current_step", "frame_mac", "frame_url", "login_key", "verify_frame"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def login_key(secret: str, login_id: str) -> bytes:
    return hmac.new(secret.encode(), b"qr\x00" + login_id.encode(), hashlib.sha256).digest()


def frame_mac(key: bytes, step: int) -> str:
    return _b64(hmac.new(key, str(step).encode(), hashlib.sha256).digest()[:16])


def current_step(step_seconds: int, now: float | None = None) -> int:
    return int((time.time() if now is None else now) // step_seconds)


def frame_url(issuer: str, login_id: str, key: bytes, step: int) -> str:
    return f"{issuer}/q/{login_id}?t={step}&h={frame_mac(key, step)}"


def verify_frame(
    key: bytes,
    t: object,
    h: object,
    *,
    step_seconds: int,
    max_age_seconds: int,
    now: float | None = None,
) -> bool:
    """True if ``(t, h)`` is a genuine frame shown at most ``max_age_seconds`` ago."""
    if not isinstance(t, str) or not re.fullmatch(r"[0-9]{1,15}", t) or not isinstance(h, str):
        return False
    step = int(t)
    now_step = current_step(step_seconds, now)
    # one step of clock skew ahead is tolerated; older than the window is stale
    if step > now_step + 1 or (now_step - step) * step_seconds > max_age_seconds:
        return False
    return hmac.compare_digest(frame_mac(key, step), h)
