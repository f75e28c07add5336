"""The "waiting desktops" scenario: many QR pages open at once, each holding a long poll.

The animated QR code is drawn by the browser, so all a waiting desktop costs the server is its
long poll (``GET /login/<id>?seen=<v>``, held until the login changes or for at most
``LONG_POLL_SECONDS``, then renewed; a blank every ``LONG_POLL_KEEPALIVE_SECONDS`` meanwhile).

1. setup: each desktop runs ``/authorize`` and loads its QR page (not measured);
2. ramp: desktops start their long polls spread over one keep-alive period (or one hold, if
   shorter), so that blanks and renewals are spread evenly, as in steady state;
3. window: server CPU and memory over ``seconds`` while all of them wait;
4. sample: phones approve some desktops one by one while the rest keep waiting; the time from
   the phone's 200 for ``/approve`` to that desktop's answer is the notification latency.

The desktops are asyncio connections in one thread, so the load generator stays cheap.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from idserver.config import SETTINGS
from idserver.crosslogin import qr

from .environment import Environment
from .logins import PhoneDevice
from .logins import PhoneResult
from .logins import parse_desktop_page
from .procstat import sample
from .seed import REDIRECT_URI
from .seed import SCOPE
from .stats import distribution

__all__ = ["run_waiting"]


@dataclass
class Desktop:
    login_id: str
    path: str
    cookie: str
    version: int
    qr_key: bytes
    step_seconds: int
    number: str
    polls: int = 0
    blanks: int = 0  # keep-alive blanks received while held
    in_flight: bool = False
    approved_at: float | None = None
    failures: int = 0


def _open_login(env: Environment, index: int) -> Desktop:
    agent = env.server.agent()
    try:
        params = {
            "response_type": "code",
            "client_id": env.rp.client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": SCOPE,
            "state": f"s{index}",
            "nonce": f"n{index}",
            "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "code_challenge_method": "S256",
        }
        started = agent.get("/authorize?" + urlencode(params))
        if started.status != 303:
            raise RuntimeError(f"authorize: HTTP {started.status}")
        page = agent.get(started.location, headers={"Accept": "text/html"})
        if page.status != 200:
            raise RuntimeError(f"desktop page: HTTP {page.status}")
        shown = parse_desktop_page(page.text)
        cookie = "; ".join(f"{k}={v}" for k, v in agent.cookies.items())
        path = "/login/" + shown["login_id"]
        return Desktop(
            shown["login_id"],
            path,
            cookie,
            shown["version"],
            shown["qr_key"],
            shown["step_seconds"],
            shown["number"],
        )
    finally:
        agent.close()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    chunked = False
    close = False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
        elif name == "connection" and value.strip().lower() == "close":
            close = True
    if not chunked:
        body = await reader.readexactly(length) if length else b""
        return status, body, close
    # A held long poll is streamed: keep-alive blanks, then the status (RFC 9112 §7.1).
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # no trailers
            return status, b"".join(parts), close
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def _wait_on(
    desktop: Desktop, port: int, start_after: float, stopping: asyncio.Event
) -> None:
    """Long-poll like desktop-login.js: renew after every answer until the login ends."""
    await asyncio.sleep(start_after)
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    while not stopping.is_set() and desktop.approved_at is None:
        request = (
            f"GET {desktop.path}?seen={desktop.version} HTTP/1.1\r\n"
            f"Host: localhost:{port}\r\nAccept: application/json\r\n"
            f"Cookie: {desktop.cookie}\r\n\r\n"
        ).encode()
        try:
            if connection is None:
                connection = await asyncio.open_connection("127.0.0.1", port)
            reader, writer = connection
            writer.write(request)
            await writer.drain()
            desktop.in_flight = True
            status, body, close = await _read_response(reader)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            desktop.in_flight = False
            desktop.failures += 1
            if connection is not None:
                connection[1].close()
            connection = None
            await asyncio.sleep(0.2)
            continue
        now = time.perf_counter()
        desktop.in_flight = False
        desktop.polls += 1
        if close:
            connection[1].close()
            connection = None
        if status != 200:
            desktop.failures += 1
            await asyncio.sleep(1)
            continue
        desktop.blanks += len(body) - len(body.lstrip())
        state = json.loads(body)
        desktop.version = state["version"]
        if state["status"] == "approved":
            desktop.approved_at = now
        elif state["status"] not in ("pending", "scanned"):
            break
    if connection is not None:
        connection[1].close()


def _approve(phone: PhoneDevice, issuer: str, desktop: Desktop) -> PhoneResult:
    step = qr.current_step(desktop.step_seconds)
    phone_url = qr.frame_url(issuer, desktop.login_id, desktop.qr_key, step)
    steps: dict[str, float] = {}
    try:
        done_at = phone.approve(phone_url, desktop.number, steps)
    except Exception as exc:  # noqa: BLE001 -- reported, not raised
        return PhoneResult(desktop.login_id, steps, 0.0, str(exc)[:200])
    return PhoneResult(desktop.login_id, steps, done_at, None)


async def _scenario(
    env: Environment,
    desktops: list[Desktop],
    *,
    seconds: float,
    ramp: float,
    sample_size: int,
    log: Any,
) -> dict[str, Any]:
    server = env.server
    port = server.port
    stopping = asyncio.Event()
    rng = random.Random(7)
    pids = server.pids()
    side = env.side_pids()

    baseline = sample(pids)
    tasks = [
        asyncio.create_task(_wait_on(d, port, rng.uniform(0, ramp), stopping)) for d in desktops
    ]
    peak_rss = baseline.total_rss_kib()

    trace: list[float] = []  # server CPU, % of one core, per second of the measured window

    async def watch_memory(until: float, *, record: bool = False) -> None:
        nonlocal peak_rss
        last = sample(pids)
        last_at = time.perf_counter()
        while time.perf_counter() < until:
            await asyncio.sleep(0.5 if not record else 1.0)
            now = sample(pids)
            peak_rss = max(peak_rss, now.total_rss_kib())
            if record:
                at = time.perf_counter()
                trace.append(round(100 * now.cpu_since(last) / (at - last_at), 1))
                last, last_at = now, at

    log(f"  ramp: {len(desktops)} long polls starting over {ramp:.0f} s …")
    await watch_memory(time.perf_counter() + ramp)
    # The window starts once every desktop's request is held, and the burst of first
    # requests has been served (the server's CPU use has calmed down).
    settle_until = time.perf_counter() + 30
    previous = sample(pids)
    while time.perf_counter() < settle_until:
        await watch_memory(time.perf_counter() + 1)
        current = sample(pids)
        calm = current.cpu_since(previous) < 0.5  # under half a core over that second
        previous = current
        if calm and all(d.in_flight for d in desktops):
            break
    in_flight_start = sum(d.in_flight for d in desktops)
    polls_before = sum(d.polls for d in desktops)
    blanks_before = sum(d.blanks for d in desktops)
    before = sample(pids)
    side_before = {name: sample(p) for name, p in side.items()}
    t0 = time.perf_counter()
    await watch_memory(t0 + seconds, record=True)
    t1 = time.perf_counter()
    load = [round(x, 2) for x in os.getloadavg()]
    after = sample(pids)
    side_after = {name: sample(p) for name, p in side.items()}
    polls_in_window = sum(d.polls for d in desktops) - polls_before
    blanks_in_window = sum(d.blanks for d in desktops) - blanks_before
    in_flight_end = sum(d.in_flight for d in desktops)
    cpu = after.cpu_since(before)

    log(f"  sample: approving {sample_size} waiting desktops …")
    chosen = rng.sample(desktops, min(sample_size, len(desktops)))
    loop = asyncio.get_running_loop()
    phones = [PhoneDevice(server, enrolled) for enrolled in env.phones]
    latencies: list[float] = []
    problems: list[str] = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        for index, desktop in enumerate(chosen):
            if not desktop.in_flight:
                await asyncio.sleep(0.05)
            phone = phones[index % len(phones)]
            result = await loop.run_in_executor(pool, _approve, phone, server.issuer, desktop)
            if result.error:
                problems.append(result.error)
                continue
            deadline = time.perf_counter() + 30
            while desktop.approved_at is None and time.perf_counter() < deadline:
                await asyncio.sleep(0.002)
            if desktop.approved_at is None:
                problems.append("desktop not told within 30 s")
                continue
            latencies.append(max(0.0, (desktop.approved_at - result.approved_at) * 1000))
            await asyncio.sleep(0.05)
    for phone in phones:
        phone.stop()
    final = sample(pids)
    stopping.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

    workers = {
        str(pid): {
            "peak_rss_mb": round(m.get("VmHWM", 0) / 1024, 1),
            "rss_mb": round(m.get("VmRSS", 0) / 1024, 1),
            "threads": m.get("Threads"),
        }
        for pid, m in final.memory.items()
        if pid != server.master_pid
    }
    result: dict[str, Any] = {
        "scenario": "waiting",
        "desktops": len(desktops),
        "ramp_seconds": ramp,
        "machine_load_average_1_5_15": load,
        "measured_seconds": round(t1 - t0, 2),
        "desktops_waiting_at_start": in_flight_start,
        "desktops_waiting_at_end": in_flight_end,
        "long_polls_renewed_in_window": polls_in_window,
        # counted when their poll ends; blanks of polls still held at the end are not in here
        "keepalive_blanks_received_in_window": blanks_in_window,
        "server_cpu_seconds": round(cpu, 3),
        "server_cpu_percent_of_one_core": round(100 * cpu / (t1 - t0), 2),
        "server_cpu_percent_per_second": trace,
        # an upper bound: the holding itself is included
        "server_cpu_ms_per_renewal": (
            round(cpu * 1000 / polls_in_window, 2) if polls_in_window else None
        ),
        "baseline_rss_mb": round(baseline.total_rss_kib() / 1024, 1),
        "peak_rss_mb": round(peak_rss / 1024, 1),
        "extra_rss_mb": round((peak_rss - baseline.total_rss_kib()) / 1024, 1),
        "approval_to_desktop_ms": distribution(latencies),
        "sample_problems": problems[:10],
        "desktop_request_failures": sum(d.failures for d in desktops),
        "workers": workers,
    }
    for name, earlier in side_before.items():
        spent = side_after[name].cpu_since(earlier)
        result[f"{name}_cpu_percent_of_one_core"] = round(100 * spent / (t1 - t0), 2)
    result["server_log_errors"] = server.errors_in_log()[:10]
    return result


def run_waiting(
    env: Environment,
    *,
    desktops: int,
    seconds: float,
    ramp: float | None,
    sample: int,
    log: Any = print,
) -> dict[str, Any]:
    defaults = {s.name: s.default for s in SETTINGS}
    long_poll = float(
        env.server.env.get("IDSERVER_LONG_POLL_SECONDS", defaults["LONG_POLL_SECONDS"])
    )
    keepalive = float(
        env.server.env.get(
            "IDSERVER_LONG_POLL_KEEPALIVE_SECONDS", defaults["LONG_POLL_KEEPALIVE_SECONDS"]
        )
    )
    # Spread the first polls over the shorter of one hold and one keep-alive period, so that
    # renewals and keep-alive blanks are spread as evenly as in steady state.
    ramp = min(long_poll, keepalive) if ramp is None else ramp
    log(f"  setup: opening {desktops} logins …")
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=8) as pool:
        opened = list(pool.map(lambda i: _open_login(env, i), range(desktops)))
    setup_seconds = time.perf_counter() - started
    result = asyncio.run(
        _scenario(env, opened, seconds=seconds, ramp=ramp, sample_size=sample, log=log)
    )
    result["setup_seconds"] = round(setup_seconds, 1)
    result["long_poll_seconds"] = long_poll
    result["long_poll_keepalive_seconds"] = keepalive
    return result
