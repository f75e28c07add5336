"""The "logins" scenario: virtual users doing complete logins for a bounded time."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from typing import Any

from .environment import Environment
from .logins import VirtualUser
from .procstat import sample
from .stats import distribution

__all__ = ["noop_cpu_ms", "run_logins", "run_noop"]

STEPS = (
    "authorize",
    "desktop_page",
    "scan",
    "challenge",
    "phone_sign",
    "approve",
    "continue",
    "token",
    "jwks",
    "rp_verify",
    "login_total",
)


NOOP_REQUESTS = 2000


def noop_cpu_ms(server: Any, requests: int = NOOP_REQUESTS) -> float:
    """Server CPU per ``GET /jwks.json`` (a request that does nothing) on one kept-alive
    connection, one after another: what every request pays before and after its view."""
    agent = server.agent(timeout=10)
    try:
        for _ in range(200):  # warm-up
            agent.get("/jwks.json")
        before = sample(server.pids())
        for _ in range(requests):
            agent.get("/jwks.json")
        return round(sample(server.pids()).cpu_since(before) * 1000 / requests, 3)
    finally:
        agent.close()


def run_noop(
    env: Environment, *, repeats: int = 3, requests: int = NOOP_REQUESTS
) -> dict[str, Any]:
    """The no-op request through the server, ``repeats`` times, each followed by the same
    request called in-process as a bare WSGI application (``profile.bare_wsgi_cpu_ms``): on a
    machine shared with other work both rise with its load, their difference much less."""
    from pathlib import Path

    from .profile import bare_wsgi_cpu_ms
    from .seed import make_app

    server = env.server
    app = make_app(
        database_url=env.database.url,
        issuer=server.issuer,
        keys_dir=Path(server.env["IDSERVER_KEYS_DIR"]),
        secret_key=server.env["IDSERVER_SECRET_KEY"],
    )
    served: list[float] = []
    bare: list[float] = []
    loads: list[float] = []
    for _ in range(repeats):
        served.append(noop_cpu_ms(server, requests))
        bare.append(bare_wsgi_cpu_ms(app, requests))
        loads.append(round(os.getloadavg()[0], 2))
    return {
        "scenario": "noop",
        "requests_per_repeat": requests,
        "machine_load_average_1": loads,
        "noop_server_cpu_ms": served,
        "noop_bare_wsgi_cpu_ms": bare,
        # what the server adds to the application's own work, per request
        "server_overhead_ms": [round(s - b, 3) for s, b in zip(served, bare, strict=True)],
        "server_log_errors": server.errors_in_log()[:10],
    }


def run_logins(env: Environment, *, users: int, seconds: float, warmup: float) -> dict[str, Any]:
    """Run ``users`` virtual users; measure only the ``seconds`` after ``warmup``."""
    server = env.server
    stop = threading.Event()
    crowd = [
        VirtualUser(server, env.phones[i % len(env.phones)], env.rp, stop) for i in range(users)
    ]
    for user in crowd:
        user.start()
    time.sleep(warmup)
    side = env.side_pids()
    before = sample(server.pids())
    side_before = {name: sample(pids) for name, pids in side.items()}
    t0 = time.perf_counter()
    time.sleep(seconds)
    t1 = time.perf_counter()
    load = [round(x, 2) for x in os.getloadavg()]
    after = sample(server.pids())
    side_after = {name: sample(pids) for name, pids in side.items()}
    stop.set()
    for user in crowd:
        user.join(timeout=90)

    records = [r for user in crowd for r in user.records if t0 <= r.finished <= t1]
    done = [r for r in records if r.ok]
    failed = [r for r in records if not r.ok]
    elapsed = t1 - t0
    cpu = after.cpu_since(before)
    per_login = (cpu * 1000 / len(done)) if done else None
    steps = {name: distribution(r.steps[name] for r in done if name in r.steps) for name in STEPS}
    steps["long_poll"] = distribution(p for r in done for p in r.long_polls)
    polls_per_login = sum(len(r.long_polls) for r in done) / len(done) if done else None
    workers = {
        str(pid): {
            "peak_rss_mb": round(m.get("VmHWM", 0) / 1024, 1),
            "threads": m.get("Threads"),
        }
        for pid, m in after.memory.items()
        if pid != server.master_pid
    }
    result: dict[str, Any] = {
        "scenario": "logins",
        "users": users,
        "warmup_seconds": warmup,
        "machine_load_average_1_5_15": load,
        "measured_seconds": round(elapsed, 2),
        "logins": len(done),
        "failed": len(failed),
        "errors": dict(Counter((r.error or "")[:120] for r in failed).most_common(5)),
        "logins_per_second": round(len(done) / elapsed, 2),
        "server_cpu_seconds": round(cpu, 2),
        "server_cpu_ms_per_login": round(per_login, 2) if per_login else None,
        "server_cpu_percent_of_one_core": round(100 * cpu / elapsed, 1),
        "long_polls_per_login": round(polls_per_login, 2) if polls_per_login else None,
        "approval_to_desktop_ms": distribution(
            r.notify_ms for r in done if r.notify_ms is not None
        ),
        "steps_ms": steps,
        "workers": workers,
        "master_peak_rss_mb": round(after.memory[server.master_pid].get("VmHWM", 0) / 1024, 1),
    }
    for name, earlier in side_before.items():
        spent = side_after[name].cpu_since(earlier)
        result[f"{name}_cpu_ms_per_login"] = round(spent * 1000 / len(done), 2) if done else None
    result["noop_server_cpu_ms"] = noop_cpu_ms(server)
    result["server_log_errors"] = server.errors_in_log()[:10]
    return result
