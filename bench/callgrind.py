"""``python -m bench callgrind``: instructions per complete login, counted by Valgrind.

CPU time on a shared machine varies by ±10 % from run to run; the number of instructions the
interpreter executes for the same work varies by well under 1 %. This runs ``python -m bench
profile`` (in-process, SQLite, Flask test client) twice under ``valgrind --tool=callgrind``: once
with one login and once with ``1 + logins``, and reports the difference per login, so that start-up,
seeding and the warm-up cancel out. Only the main thread is counted (the requests run there); a
helper thread's polling grows with wall-clock time, and so with the machine's load. The start-up's
RSA key generation and key check (random prime search, random witnesses) are not counted: with
them two runs of the same code differed by 371 M instructions, without them by about 14 M (0.1 %).
``PYTHONHASHSEED`` is fixed.

It also reports the SQL statements and commits per login and per step (from the longer run), and
writes everything to ``bench/results/<time>-callgrind-<database>.json``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["count_instructions"]

_TOTALS = re.compile(r"^(?:summary|totals):\s*(\d+)", re.MULTILINE)


def _instructions(out_file: Path) -> int:
    """The main thread's instructions: helper threads (the SQLite watcher polls every 50 ms)
    run for wall-clock time, which depends on the machine's load, not on the work."""
    main = out_file.with_name(out_file.name + "-01")
    found = _TOTALS.findall(main.read_text())
    if not found:
        raise RuntimeError(f"no instruction total in {main}")
    return int(found[-1])


def _run(logins: int, workdir: Path, database: str) -> tuple[int, dict[str, Any]]:
    out = workdir / f"callgrind.{logins}.out"
    report = workdir / f"profile.{logins}.json"
    command = [
        "valgrind",
        "--tool=callgrind",
        "--separate-threads=yes",
        # RSA key generation at start-up searches for primes at random: its cost varies by
        # hundreds of millions of instructions from run to run (OpenSSL 3 generates through
        # the FIPS 186-5 path, not BN_generate_prime_ex2), and the check of a loaded RSA key
        # tests its primes with random witnesses. Collection pauses inside both.
        "--toggle-collect=RSA_generate_multi_prime_key",
        "--toggle-collect=RSA_check_key",
        "--collect-atstart=yes",  # after --toggle-collect, which would switch it off
        f"--callgrind-out-file={out}",
        sys.executable,
        "-m",
        "bench",
        "profile",
        "--logins",
        str(logins),
        "--database",
        database,
        "--noop-requests",
        "0",
        "--json-to",
        str(report),
    ]
    # Under valgrind a login takes seconds of wall-clock time: the key store's re-read every
    # KEYS_REFRESH_SECONDS would fall into the counted logins a varying number of times.
    env = {**os.environ, "PYTHONHASHSEED": "0", "IDSERVER_KEYS_REFRESH_SECONDS": "86400"}
    done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # noqa: S603 -- our own command line
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-15:]
        raise RuntimeError(
            f"bench profile under valgrind failed ({done.returncode}):\n" + "\n".join(tail)
        )
    return _instructions(out), json.loads(report.read_text())


def count_instructions(*, logins: int, database: str) -> dict[str, Any]:
    """Instructions per login: (run with ``1 + logins``) − (run with 1), divided by ``logins``."""
    if shutil.which("valgrind") is None:
        raise SystemExit("python -m bench callgrind needs valgrind (apt-get install valgrind)")
    workdir = Path(tempfile.mkdtemp(prefix="bench-callgrind-"))
    try:
        base, _ = _run(1, workdir, database)
        total, profile = _run(1 + logins, workdir, database)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "database": database,
        "logins": logins,
        "instructions_per_login": round((total - base) / logins),
        "instructions_per_login_millions": round((total - base) / logins / 1e6, 2),
        "sql_statements_per_login": profile["sql_statements_per_login"],
        "commits_per_login": profile["commits_per_login"],
        "steps": {
            step: {"sql": row["sql"], "commits": row["commits"]}
            for step, row in profile["steps"].items()
        },
        "statements": profile["statements"],
    }
