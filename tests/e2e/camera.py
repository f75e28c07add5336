"""The phone's camera: read a QR code from screenshot pixels, as a phone would from the screen."""

from __future__ import annotations

import io

import numpy as np
import zxingcpp
from PIL import Image

__all__ = ["read_qr_codes"]


def read_qr_codes(png: bytes) -> list[str]:
    """The text of every QR code zxing-cpp finds in a PNG screenshot."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("L"))
    found = zxingcpp.read_barcodes(pixels, formats=zxingcpp.BarcodeFormat.QRCode)
    return [code.text for code in found if code.valid]
