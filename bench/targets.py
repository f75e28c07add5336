"""Issue 16's targets, judged from what ``python -m bench run`` measured.

``judge`` reads the result documents of one run and gives a ``Verdict`` per target: the figures
(one per run that measured it), whether the target is met, or ``None`` when this run did not
measure it. For a CPU target that is missed, ``explain`` takes an in-process profile of complete
logins (``bench.profile``) and splits the cost into layers — what the HTTP server adds, the web
framework, SQLAlchemy, the database driver, protocols and cryptography, our own code — so the
table shows *why* the figure is what it is, and ``design_changes`` states, layer by layer, what
would have to change and how far that change alone could bring the figure. No figure here is
assumed: each comes from the run or from the profile taken beside it.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass
from dataclasses import field
from typing import Any

__all__ = [
    "LAYERS",
    "TARGETS",
    "Target",
    "Verdict",
    "design_changes",
    "explain",
    "explain_noop",
    "judge",
    "layer_of",
    "own_time_by_layer",
    "render",
]


@dataclass(frozen=True)
class Target:
    key: str
    text: str
    limit: float
    unit: str


TARGETS = (
    Target("login_cpu_sqlite", "server CPU per complete login, SQLite", 10.0, "ms"),
    Target("login_cpu_postgresql", "server CPU per complete login, PostgreSQL", 14.0, "ms"),
    Target("noop_cpu", "a request that does nothing (/jwks.json), server CPU", 0.35, "ms"),
    Target("waiting_cpu", "1,000 waiting desktops, in every run", 3.0, "% of a core"),
    Target("waiting_memory", "1,000 waiting desktops, extra memory", 150.0, "MB"),
    Target("approval_p95", "approval reaches the desktop, p95", 250.0, "ms"),
    Target("citizens_ratio", "CPU per login at 1,000,000 citizens ÷ at 1,000", 1.10, "×"),
)

# How a profiled function's file (or, for C functions, its name) maps to a layer of the stack.
LAYERS = {
    "server": "HTTP server (what `idserver serve` adds to the in-process figure)",
    "framework": "web framework (Flask, Werkzeug, Jinja, Babel, Flask-Limiter)",
    "sqlalchemy": "SQLAlchemy (statement building, ORM, result rows)",
    "driver": "database driver (the SQL itself: execute, fetch, commit)",
    "protocols": "protocols and cryptography (Authlib, joserfc, py_webauthn, cryptography)",
    "ours": "Bürger-ID's own code",
    "python": "Python itself (builtins and standard library no caller could be named for)",
}
_FRAMEWORK = {
    "flask",
    "werkzeug",
    "jinja2",
    "markupsafe",
    "flask_babel",
    "babel",
    "flask_limiter",
    "limits",
    "itsdangerous",
    "flask_sqlalchemy",
    "blinker",
}
_PROTOCOLS = {"authlib", "joserfc", "webauthn", "cryptography", "cbor2", "segno", "qrcode"}
_DRIVERS = {"sqlite3", "psycopg", "psycopg_pool", "psycopg_binary"}


@dataclass
class Verdict:
    target: Target
    figures: list[float] = field(default_factory=list)
    note: str = ""
    explanation: list[str] = field(default_factory=list)

    @property
    def met(self) -> bool | None:
        """Met when every run's figure is within the limit; ``None`` when none measured it."""
        if not self.figures:
            return None
        return max(self.figures) <= self.target.limit


def _logins(outcome: list[dict[str, Any]], database: str) -> list[dict[str, Any]]:
    return [
        run
        for document in outcome
        for run in document.get("runs", ())
        if run.get("scenario") == "logins" and run["environment"]["database"] == database
    ]


def _waiting(outcome: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [document for document in outcome if document.get("scenario") == "waiting"]


def judge(outcome: list[dict[str, Any]]) -> dict[str, Verdict]:
    """A verdict per target from the documents ``python -m bench run`` wrote."""
    verdicts = {target.key: Verdict(target) for target in TARGETS}
    for database in ("sqlite", "postgresql"):
        verdict = verdicts[f"login_cpu_{database}"]
        runs = _logins(outcome, database)
        verdict.figures = [
            r["server_cpu_ms_per_login"] for r in runs if r["server_cpu_ms_per_login"]
        ]
        backends = [
            r["postgres_cpu_ms_per_login"] for r in runs if r.get("postgres_cpu_ms_per_login")
        ]
        if backends:
            verdict.note = f"+ {', '.join(f'{b:g}' for b in backends)} ms in PostgreSQL's backends"
        if not runs and database == "postgresql":
            verdict.note = "not measured: set IDSERVER_TEST_DATABASE_URL"
    noop = verdicts["noop_cpu"]
    for document in outcome:
        if document.get("scenario") == "noop":
            noop.figures.append(document["noop_server_cpu_ms"])
            noop.note = f"server {document['environment']['server']}"
        for run in document.get("runs", ()):
            if run.get("noop_server_cpu_ms") is not None:
                noop.figures.append(run["noop_server_cpu_ms"])
                noop.note = f"server {run['environment']['server']}"
    waiting = _waiting(outcome)
    verdicts["waiting_cpu"].figures = [w["server_cpu_percent_of_one_core"] for w in waiting]
    verdicts["waiting_memory"].figures = [w["extra_rss_mb"] for w in waiting]
    approval = verdicts["approval_p95"]
    approval.figures = [
        w["approval_to_desktop_ms"]["p95"]
        for w in waiting
        if w["approval_to_desktop_ms"]["p95"] is not None
    ]
    for document in waiting:
        if document["desktops"] != 1000:
            verdicts["waiting_cpu"].note = f"{document['desktops']} desktops, not 1,000"
    ratio = verdicts["citizens_ratio"]
    for document in outcome:
        sizes = document.get("cpu_per_login_by_citizens")
        if sizes and len(sizes) > 1:
            largest = sizes[max(sizes, key=int)]
            ratio.figures.append(largest["ratio_to_smallest"])
            ratio.note = f"{min(sizes, key=int)} vs {max(sizes, key=int)} citizens"
    if not ratio.figures:
        ratio.note = "not measured: run with two sizes (the default, --citizens 1000,1000000)"
    return verdicts


def layer_of(filename: str, function: str) -> str:
    """The layer of a profiled function (``pstats`` key: file name and function name)."""
    if "site-packages/" in filename:
        package = filename.split("site-packages/", 1)[1].split("/", 1)[0]
        if package in _FRAMEWORK:
            return "framework"
        if package == "sqlalchemy":
            return "sqlalchemy"
        if package in _PROTOCOLS or package.startswith(("_cffi", "cryptography")):
            return "protocols"
        if package in _DRIVERS:
            return "driver"
        return "python"
    if "/idserver/" in filename:
        return "ours"
    if filename == "~":  # a C function: its name says whose it is
        if "sqlite3." in function or "psycopg" in function:
            return "driver"
        if "cryptography" in function or "openssl" in function:
            return "protocols"
        return "python"
    if "/sqlite3/" in filename:
        return "driver"
    return "python"


def _own_layer(key: tuple[str, int, str]) -> str:
    filename, _line, function = key
    if "/bench/" in filename or filename.endswith(("werkzeug/test.py", "flask/testing.py")):
        return "client"
    return layer_of(filename, function)


def own_time_by_layer(stats: Any, waiting: float = 0.0) -> dict[str, float]:
    """Own (exclusive) time per layer, in seconds. What Python itself spends (builtins, the
    standard library) is charged to the layers that called it, in proportion to the time spent
    on each call edge, so ``json.dumps`` from Flask counts as framework. ``client`` is the
    benchmark's own code and the test client that stands in for the HTTP server.

    cProfile measures wall time (a CPU timer would cost more than most functions it times), so
    the driver's own time includes waiting for a database server. ``waiting`` — the profiled
    run's wall time minus its CPU time — is taken off the driver and returned as ``waiting``."""
    table = stats.stats
    shares: dict[Any, dict[str, float]] = {}

    def share(key: Any, seen: frozenset[Any]) -> dict[str, float]:
        if key in shares:
            return shares[key]
        layer = _own_layer(key)
        if layer != "python":
            return {layer: 1.0}
        callers = table.get(key, (0, 0, 0.0, 0.0, {}))[4]
        weights = {caller: edge[3] for caller, edge in callers.items() if caller not in seen}
        whole = sum(weights.values())
        if not whole:
            return {"python": 1.0}
        mixed: Counter[str] = Counter()
        for caller, weight in weights.items():
            for name, fraction in share(caller, seen | {key}).items():
                mixed[name] += fraction * weight / whole
        shares[key] = dict(mixed)
        return shares[key]

    own: Counter[str] = Counter()
    for key, row in table.items():
        for layer, fraction in share(key, frozenset()).items():
            own[layer] += row[2] * fraction
    own["waiting"] = min(max(waiting, 0.0), own["driver"])
    own["driver"] -= own["waiting"]
    return dict(own)


def design_changes(layers_ms: dict[str, float], limit: float) -> list[str]:
    """What each layer costs now, what would change it, and whether the rest alone misses
    ``limit``: the floor left if a layer's cost went to nothing is the sum of all the others."""
    total = sum(layers_ms.values())
    remedies = {
        "server": "a server that adds less per request: `idserver serve --server granian` "
        "(measure with `bench run --server granian`), fewer requests per login",
        "framework": "a much smaller request path than Flask with its extensions (routing, "
        "request/response objects, context locals, Jinja and Babel per request): a framework "
        "change, not a query change",
        "sqlalchemy": "every hot statement built once (`bindparam`) and read as plain rows, no "
        "ORM objects; or the driver's prepared statements directly",
        "driver": "fewer statements and commits per login (merge steps, one transaction per "
        "request)",
        "protocols": "nothing to gain without weakening the protocol (signatures, hashes, "
        "WebAuthn checks are required)",
        "ours": "less per-request work in our views and hooks (measure per step)",
        "python": "follows the layers above",
    }
    lines = []
    for layer, ms in sorted(layers_ms.items(), key=lambda item: -item[1]):
        floor = total - ms
        verdict = "alone it cannot meet" if floor > limit else "could meet"
        lines.append(
            f"{ms:6.2f} ms {LAYERS[layer]}: {remedies[layer]} "
            f"[without this layer at all: {floor:.1f} ms, {verdict} {limit:g} ms]"
        )
    changeable = sorted(
        (layer for layer in layers_ms if layer in ("server", "framework", "sqlalchemy", "ours")),
        key=lambda layer: -layers_ms[layer],
    )
    needed, left = [], total
    for layer in changeable:
        if left <= limit:
            break
        needed.append(layer)
        left -= layers_ms[layer]
    if left <= limit:
        lines.append(
            "Cutting the largest changeable layers to nothing, it takes all of these to reach "
            f"the target ({left:.1f} ms left): "
            + ", ".join(LAYERS[layer].split(" (")[0] for layer in needed)
            + "; none can go to nothing, so meeting it needs every one of their changes above, "
            "together."
        )
    else:
        lines.append(
            f"Even with server, framework, SQLAlchemy and our code at nothing, {left:.1f} ms "
            "would be left: the statements and the cryptography themselves must become cheaper."
        )
    untouchable = sum(layers_ms.get(name, 0.0) for name in ("protocols", "python", "driver"))
    lines.append(
        f"Driver, protocols and Python alone cost {untouchable:.1f} ms; the target leaves "
        f"{max(limit - untouchable, 0):.1f} ms for server, framework, SQLAlchemy and our code "
        f"together (now {total - untouchable:.1f} ms)."
    )
    return lines


def explain(verdict: Verdict, profile: dict[str, Any]) -> None:
    """Fill ``verdict.explanation`` for a missed login-CPU target from an in-process profile
    (``bench.profile.profile_logins(cprofile=True)``) taken beside the served run."""
    served = statistics.median(verdict.figures)
    in_process = profile["server_cpu_ms_per_login"]  # the test client's work included
    own = dict(profile["own_time_by_layer_seconds"])
    cpu = sum(seconds for layer, seconds in own.items() if layer != "waiting")
    scale = in_process / (cpu or 1.0)  # profiled CPU seconds → unprofiled ms per login
    own.pop("client", None)
    own.pop("waiting", None)  # the database server's time, not this process's
    layers_ms = {layer: seconds * scale for layer, seconds in own.items()}
    in_process = sum(layers_ms.values())  # without the test client
    layers_ms["server"] = max(served - in_process, 0.0)
    requests = len(profile["steps"]) + 1  # the long poll is asked twice
    lines = [
        f"Served: {served:.1f} ms per login; in-process (no HTTP server, {profile['logins']} "
        f"logins): {in_process:.1f} ms, {profile['sql_statements_per_login']:g} SQL statements, "
        f"{profile['commits_per_login']:g} commits; the server adds {layers_ms['server']:.1f} ms "
        f"({layers_ms['server'] / requests:.2f} ms per request × {requests}).",
        "Per step, in-process: "
        + ", ".join(
            f"{step} {row['cpu_ms']:.1f} ms/{row['sql']:g} SQL"
            for step, row in profile["steps"].items()
        ),
        "By layer (cProfile own time, Python's own charged to its callers, scaled to the "
        "in-process figure without the profiler):",
        *("  " + line for line in design_changes(layers_ms, verdict.target.limit)),
    ]
    verdict.explanation = lines


def explain_noop(verdict: Verdict, bare_ms: float) -> None:
    served = statistics.median(verdict.figures)
    verdict.explanation = [
        f"The same request as a bare WSGI call (Flask, our hooks, no server): {bare_ms:.3f} ms; "
        f"the server adds {max(served - bare_ms, 0):.3f} ms.",
        f"Design change: a server that adds at most {max(verdict.target.limit - bare_ms, 0):.3f} "
        "ms per request (`bench run --scenario noop --server granian` measures the one offered); "
        f"below {verdict.target.limit:g} ms needs the application's own floor ({bare_ms:.3f} ms) "
        "to fall too.",
    ]


def render(verdicts: dict[str, Verdict]) -> str:
    """The targets as a table, then the explanation of each one missed."""
    lines = ["", "Issue 16's targets", "-" * 100]
    for verdict in verdicts.values():
        target = verdict.target
        figures = ", ".join(f"{f:g}" for f in verdict.figures) or "–"
        state = {True: "met", False: "MISSED", None: "not measured"}[verdict.met]
        limit = f"≤ {target.limit:g} {target.unit}"
        lines.append(f"{target.text:<56} {limit:<18} {figures:<16} {state}")
        if verdict.note:
            lines.append(f"{'':<4}{verdict.note}")
    for verdict in verdicts.values():
        if verdict.explanation:
            lines += ["", f"Why missed — {verdict.target.text}:", *verdict.explanation]
    return "\n".join(lines)
