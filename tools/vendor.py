"""Fetch the pinned front-end packages with npm and copy what the pages serve.

``make install`` runs this. ``npm ci`` installs ``package-lock.json`` into ``node_modules/``:
the KERN UX stylesheet and fonts (``@kern-ux/native``, EUPL-1.2), axe-core (for the browser
tests only) and openid-client (for the relying-party interop tests only, run by node). The
stylesheet, the font stylesheet, every font file it names and the licence are copied into
``idserver/static/vendor/kern/`` and ``demo_portal/static/vendor/kern/`` (both git-ignored),
so the pages load them from their own origin under the ``'self'`` CSP.

Without npm or without the registry nothing fails: one line says what is missing, the pages
use their own small stylesheet and the accessibility checks are skipped. A stamp named after
the lock file's checksum makes the work happen once.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "package-lock.json"
KERN = ROOT / "node_modules" / "@kern-ux" / "native"
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
TARGETS = (ROOT / "idserver/static/vendor/kern", ROOT / "demo_portal/static/vendor/kern")
STYLESHEETS = ("dist/kern.min.css", "dist/fonts/fira-sans.css")
LICENCE = "LICENSE.md"
URL = re.compile(r"""url\(\s*["']?([^"')]+)["']?\s*\)""")
FALLBACK = "pages use the built-in stylesheet; accessibility checks will be skipped"


def stamp() -> Path:
    checksum = zlib.crc32(LOCK.read_bytes())
    return TARGETS[0] / f".installed-{checksum:08x}"


def referenced_files(stylesheet: Path) -> list[Path]:
    """The local files a stylesheet's ``url()``s name; refuses any that leave the origin."""
    found = []
    for url in URL.findall(stylesheet.read_text(encoding="utf-8")):
        if url.startswith("data:"):
            continue  # icons inlined as data: URIs; the CSP allows data: images
        if re.match(r"^[a-z][a-z0-9+.-]*:|^//", url, re.I):
            raise SystemExit(f"vendor: {stylesheet.name} loads {url} from elsewhere")
        target = (stylesheet.parent / url.split("?")[0].split("#")[0]).resolve()
        if not target.is_file():
            raise SystemExit(f"vendor: {stylesheet.name} names {url}, which is not in the package")
        found.append(target)
    return found


def copy_kern(target: Path) -> None:
    dist = KERN / "dist"
    shutil.rmtree(target, ignore_errors=True)
    files = [KERN / LICENCE]
    for name in STYLESHEETS:
        files.append(KERN / name)
        files += referenced_files(KERN / name)
    for source in files:
        relative = source.relative_to(dist) if source.is_relative_to(dist) else source.name
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, destination)


def main() -> int:
    if stamp().exists():
        return 0
    npm = shutil.which("npm")
    if npm is None:
        print(f"npm not found: {FALLBACK}")
        return 0
    result = subprocess.run(  # noqa: S603 - npm from PATH, fixed arguments
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 or not AXE.is_file():
        errors = [line for line in result.stderr.splitlines() if line.startswith("npm error")]
        reason = errors[0].removeprefix("npm error").strip() if errors else "no axe-core"
        print(f"npm could not install the packages ({reason}): {FALLBACK}")
        return 0
    for target in TARGETS:
        copy_kern(target)
    stamp().touch()
    folders = ", ".join(str(target.relative_to(ROOT)) for target in TARGETS)
    print(f"vendor: KERN UX stylesheet, fonts and licence copied to {folders}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
