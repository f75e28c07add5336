"""``python -m demo_portal [--check]``: the one-command demo (``make demo``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .launcher import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m demo_portal",
        description="Run Bürger-ID and the three demo portals on localhost until Ctrl-C.",
        epilog=(
            "Ports: DEMO_IDP_PORT (5000), DEMO_PARKING_PORT (5001), DEMO_JOBS_PORT (5002), "
            "DEMO_DOGTAX_PORT (5003)."
        ),
    )
    parser.add_argument(
        "--check",
        action="store_true",
        default=os.environ.get("DEMO_CHECK", "") not in ("", "0"),
        help="run the scripted walk-through with soft phones, then stop (exit 0 or 1); "
        "also DEMO_CHECK=1",
    )
    args = parser.parse_args(argv)
    return run(Path.cwd(), check=args.check)


if __name__ == "__main__":
    sys.exit(main())
