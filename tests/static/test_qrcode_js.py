"""The browser QR encoder (idserver/static/js/qrcode.js), checked from outside.

Every symbol is rendered to pixels and read back with an independent decoder (zxing-cpp); the
version choice and the exact module layout are compared with segno (ISO/IEC 18004 byte mode).
The encoder runs under Node through tests/static/qr_harness.js.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

NODE = shutil.which("node")
if NODE is None:
    pytest.skip(
        "node is not on PATH; the JavaScript QR encoder cannot run", allow_module_level=True
    )

import numpy as np  # noqa: E402
import segno  # noqa: E402
import zxingcpp  # noqa: E402

HARNESS = Path(__file__).with_name("qr_harness.js")
QUIET_ZONE = 4
ECLS = ("L", "M", "Q", "H")

# ISO/IEC 18004 Table 7: byte-mode capacity (bytes) of versions 1–15 per error correction level.
BYTE_CAPACITY = {
    "L": (17, 32, 53, 78, 106, 134, 154, 192, 230, 271, 321, 367, 425, 458, 520),
    "M": (14, 26, 42, 62, 84, 106, 122, 152, 180, 213, 251, 287, 331, 362, 412),
    "Q": (11, 20, 32, 46, 60, 74, 86, 108, 130, 151, 177, 203, 241, 258, 292),
    "H": (7, 14, 24, 34, 44, 58, 64, 84, 98, 119, 137, 155, 177, 194, 220),
}

LOGIN_URL = (
    "http://localhost:5000/q/"
    "Q2l0aXplbklEVHJhbnNhY3Rpb24wMDAx?t=1790000000&h=3q2-7wAAAAC6vN7_EjRWeJq83v8SNFZ4mrze_w"
)
LONG_URL = (
    "https://buerger-id.example.gemeinde.de/crosslogin/q/"
    "Q2l0aXplbklEVHJhbnNhY3Rpb24wMDAx?t=1790000000&h=3q2-7wAAAAC6vN7_EjRWeJq83v8SNFZ4mrze_w"
    "&client_id=demo-portal-buergeramt&redirect=https%3A%2F%2Fportal.example%2Fcallback%3Fstate%3Dabc"
)

TEXTS = [
    "a",
    "Bürger-ID ß",
    "Grüße aus Köln — 東京 😀",
    "0123456789",
    "HELLO WORLD",
    LOGIN_URL,
    LONG_URL,
    "x" * 300,
]


def run_harness(cases):
    completed = subprocess.run(
        [NODE, str(HARNESS)],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(completed.stdout)


def encode_all(texts, **opts):
    return run_harness([{"text": text, "opts": opts} for text in texts])


def to_matrix(result):
    return np.array([[c == "1" for c in row] for row in result["rows"]], dtype=bool)


def render(modules, scale=4):
    """Dark modules black on white, with the quiet zone, as a greyscale image."""
    padded = np.pad(modules, QUIET_ZONE, constant_values=False)
    image = np.where(padded, 0, 255).astype(np.uint8)
    return np.kron(image, np.ones((scale, scale), dtype=np.uint8))


def decode(image):
    barcodes = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)
    assert len(barcodes) == 1, "zxing-cpp found no QR code"
    return barcodes[0]


def assert_round_trip(result, text):
    assert "error" not in result, result
    barcode = decode(render(to_matrix(result)))
    assert barcode.bytes == text.encode("utf-8")
    assert barcode.text == text


@pytest.mark.parametrize("ecl", ECLS)
def test_decodes_to_input_at_every_level(ecl):
    texts = [t for t in TEXTS if len(t.encode()) <= BYTE_CAPACITY[ecl][-1]]
    for text, result in zip(texts, encode_all(texts, ecl=ecl), strict=True):
        assert_round_trip(result, text)
        assert result["size"] == 4 * result["version"] + 17


@pytest.mark.parametrize("ecl", ECLS)
def test_fills_each_version_exactly_to_capacity(ecl):
    texts = []
    for capacity in BYTE_CAPACITY[ecl]:
        texts += ["k" * capacity, "k" * (capacity + 1)]
    results = encode_all(texts, ecl=ecl)
    for version, capacity in enumerate(BYTE_CAPACITY[ecl], start=1):
        full, over = results[2 * (version - 1)], results[2 * (version - 1) + 1]
        assert full["version"] == version
        assert_round_trip(full, "k" * capacity)
        if version < 15:
            assert over["version"] == version + 1
            assert_round_trip(over, "k" * (capacity + 1))
        else:
            assert over["error"] == "RangeError"


@pytest.mark.parametrize("ecl", ECLS)
def test_chooses_the_same_version_as_segno(ecl):
    lengths = range(1, BYTE_CAPACITY[ecl][-1] + 1, 7)
    texts = ["ü" + "u" * (n - 2) if n > 2 else "u" * n for n in lengths]
    for text, result in zip(texts, encode_all(texts, ecl=ecl), strict=True):
        assert result["version"] == segno_reference(text, ecl).version, text


def segno_reference(text, ecl, **kwargs):
    return segno.make(
        text,
        error=ecl.lower(),
        mode="byte",
        encoding="utf-8",
        micro=False,
        boost_error=False,
        **kwargs,
    )


@pytest.mark.parametrize("ecl", ECLS)
def test_matches_segno_module_for_module_at_every_version_and_mask(ecl):
    # Texts fill the symbol exactly: with room to spare, segno appends a zero byte after the
    # terminator (its padding writes 8 bits when the stream is already on a byte boundary),
    # which is legal but shifts the pad codewords, so only full symbols compare module for module.
    cases = []
    for capacity in BYTE_CAPACITY[ecl]:
        text = "ß" * (capacity // 2) + "k" * (capacity % 2)
        cases += [{"text": text, "opts": {"ecl": ecl, "mask": mask}} for mask in range(8)]
    for case, result in zip(cases, run_harness(cases), strict=True):
        mask = case["opts"]["mask"]
        reference = segno_reference(case["text"], ecl, mask=mask, version=result["version"])
        assert reference.mask == mask
        assert (to_matrix(result) == np.array(reference.matrix, dtype=bool)).all(), (
            reference.designator
        )


def penalty(modules):
    """ISO/IEC 18004 §7.8.3 score, written independently of the encoder under test."""
    score = 0
    finder_like = re.compile(r"(?=(00001011101|10111010000))")
    for lines in (modules, modules.T):
        for line in lines:
            bits = "".join("1" if m else "0" for m in line)
            score += sum(len(run) - 2 for run in re.findall(r"0{5,}|1{5,}", bits))
            # The quiet zone outside the symbol is light.
            score += 40 * len(finder_like.findall("0000" + bits + "0000"))
    block = modules[:-1, :-1]
    same = (block == modules[1:, :-1]) & (block == modules[:-1, 1:]) & (block == modules[1:, 1:])
    score += 3 * int(same.sum())
    dark_percent = 100 * modules.sum() / modules.size
    score += 10 * int(abs(dark_percent - 50) // 5)
    return score


@pytest.mark.parametrize("text", [LOGIN_URL, LONG_URL, "Bürger-ID ß", "a"])
def test_chooses_the_mask_with_the_lowest_penalty(text):
    chosen, *forced = run_harness(
        [{"text": text}] + [{"text": text, "opts": {"mask": mask}} for mask in range(8)]
    )
    scores = [penalty(to_matrix(result)) for result in forced]
    assert scores[chosen["mask"]] == min(scores)
    assert (to_matrix(chosen) == to_matrix(forced[chosen["mask"]])).all()


def test_animated_login_urls_all_decode():
    texts = [
        f"http://localhost:5000/q/{'A' * 31}{i % 10}?t={1790000000 + i}&h={'h' * (22 + i)}"
        for i in range(22)
    ]
    for text, result in zip(texts, encode_all(texts), strict=True):
        assert_round_trip(result, text)


def rasterize_path(d, extent, scale=6):
    image = np.full((extent * scale, extent * scale), 255, dtype=np.uint8)
    runs = re.findall(r"M(\d+) (\d+)h(\d+)v1h-(\d+)z", d)
    assert "".join(f"M{x} {y}h{n}v1h-{m}z" for x, y, n, m in runs) == d
    for x, y, n, m in runs:
        x, y, n = int(x), int(y), int(n)
        assert n == int(m)
        image[y * scale : (y + 1) * scale, x * scale : (x + n) * scale] = 0
    return image


def test_svg_is_csp_safe_and_decodes():
    svg_case = {"text": LOGIN_URL, "svg": True, "opts": {"label": "Anmelde-QR-Code"}}
    result, plain = run_harness([svg_case, {"text": LOGIN_URL}])
    svg = result["svg"]
    extent = plain["size"] + 2 * QUIET_ZONE
    assert svg["name"] == "svg"
    assert svg["ns"] == "http://www.w3.org/2000/svg"
    assert svg["attributes"] == {
        "viewBox": f"0 0 {extent} {extent}",
        "role": "img",
        "shape-rendering": "crispEdges",
        "aria-label": "Anmelde-QR-Code",
    }
    background, path = svg["children"]
    assert background["attributes"] == {"width": str(extent), "height": str(extent), "fill": "#fff"}
    assert [c["name"] for c in svg["children"]] == ["rect", "path"]
    assert set(path["attributes"]) == {"d", "fill"}
    assert path["attributes"]["fill"] == "#000"
    assert decode(rasterize_path(path["attributes"]["d"], extent)).text == LOGIN_URL


def test_svg_can_leave_out_the_background():
    svg = run_harness([{"text": "a", "svg": True, "opts": {"light": None, "dark": "#123"}}])[0][
        "svg"
    ]
    assert [c["name"] for c in svg["children"]] == ["path"]
    assert svg["children"][0]["attributes"]["fill"] == "#123"


@pytest.mark.parametrize(
    ("text", "opts"),
    [
        ("x" * 413, {"ecl": "M"}),
        ("x" * 221, {"ecl": "H"}),
        ("ä" * 207, {"ecl": "M"}),
        ("a", {"ecl": "X"}),
        ("a", {"mask": 8}),
    ],
)
def test_rejects_what_it_cannot_encode(text, opts):
    result = run_harness([{"text": text, "opts": opts}])[0]
    assert result["error"] == "RangeError"
