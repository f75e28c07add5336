"""``python -m bench``: load Bürger-ID (``idserver serve``) on 127.0.0.1, report what it costs.

::

    python -m bench                          # logins (1,000 and 1,000,000 residents) + waiting
                                             # desktops, SQLite (+ PostgreSQL when
                                             # IDSERVER_TEST_DATABASE_URL is set), then issue
                                             # 16's targets: met, or why not (a profile)
    python -m bench run --scenario logins --database sqlite --users 4 --seconds 20
    python -m bench run --scenario waiting --desktops 1000 --wait-seconds 20
    python -m bench run --scenario noop --server granian    # a no-op request's server CPU
                                                            # (idserver serve --server granian)
    python -m bench run --scenario logins --citizens 1000   # one size only
    python -m bench seed --citizens 1000000 --database-url sqlite:///bench/results/1m.sqlite3
    python -m bench run --database-url sqlite:///bench/results/1m.sqlite3 --citizens 0
    python -m bench profile --logins 200 --cprofile   # in-process: CPU and SQL per login step,
                                                      # a table, and a no-op request's CPU
    python -m bench callgrind --logins 20             # instructions per login (valgrind), the
                                                      # figure to compare on a busy machine

Every scenario is bounded in time; results go to stdout and ``bench/results/*.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
from typing import Any

from .environment import machine
from .environment import prepared
from .stats import write_results


def _sizes(text: str) -> list[int]:
    return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command")

    run = commands.add_parser("run", help="run scenarios (the default)")
    run.add_argument(
        "--scenario",
        choices=("logins", "waiting", "noop", "all"),
        default="all",
        help="all: logins and waiting; noop: a request that does nothing, through the server "
        "and as a bare WSGI call, back to back (--repeats times)",
    )
    run.add_argument("--repeats", type=int, default=3, help="noop: measurements per server")
    run.add_argument(
        "--no-targets",
        action="store_true",
        help="do not judge issue 16's targets (nor profile the CPU targets missed)",
    )
    run.add_argument(
        "--explain-logins",
        type=int,
        default=100,
        help="in-process logins profiled to explain a missed CPU target",
    )
    run.add_argument(
        "--database",
        choices=("sqlite", "postgresql", "all"),
        default="all",
        help="all: SQLite, plus PostgreSQL when IDSERVER_TEST_DATABASE_URL is set",
    )
    run.add_argument(
        "--database-url", help="use this (already seeded) database instead of a fresh one"
    )
    run.add_argument(
        "--redis-url",
        default=os.environ.get("IDSERVER_TEST_REDIS_URL"),
        help="give the server IDSERVER_REDIS_URL (default: $IDSERVER_TEST_REDIS_URL)",
    )
    run.add_argument(
        "--citizens",
        type=_sizes,
        default=[1000, 1_000_000],
        help="residents to bulk-load; a list runs the logins scenario once per size and compares "
        "CPU per login (default: 1000,1000000; the waiting scenario takes the first)",
    )
    run.add_argument("--phones", type=int, default=16, help="enrolled soft phones")
    run.add_argument(
        "--history",
        type=int,
        default=0,
        help="past logins' authorization codes to bulk-load first (a server in service)",
    )
    run.add_argument(
        "--rounds",
        type=int,
        help="logins: measure every size this many times, in turn (default: 2 with several "
        "sizes, else 1)",
    )
    run.add_argument("--users", type=int, default=4, help="concurrent virtual users")
    run.add_argument("--seconds", type=float, default=20.0, help="measured time per scenario")
    run.add_argument("--warmup", type=float, default=5.0)
    run.add_argument(
        "--server",
        choices=("gunicorn", "granian"),
        default="gunicorn",
        help="`idserver serve --server`: the HTTP server under test",
    )
    run.add_argument("--workers", type=int, default=2)
    run.add_argument("--threads", type=int, help="gunicorn threads per worker (logins)")
    run.add_argument("--desktops", type=int, default=1000, help="waiting desktops")
    run.add_argument("--wait-seconds", type=float, default=20.0)
    run.add_argument(
        "--ramp-seconds",
        type=float,
        help="spread the desktops' first long polls over this time (default: the shorter of "
        "the keep-alive period and the hold, so blanks and re-polls are evenly spread)",
    )
    run.add_argument("--sample", type=int, default=100, help="desktops approved while waiting")
    run.add_argument(
        "--long-poll-seconds",
        type=int,
        help="the server's IDSERVER_LONG_POLL_SECONDS (default: the server's own default)",
    )
    run.add_argument(
        "--keepalive-seconds",
        type=int,
        help="the server's IDSERVER_LONG_POLL_KEEPALIVE_SECONDS (default: the server's own)",
    )
    run.add_argument(
        "--waiting-threads",
        type=int,
        help="gunicorn threads per worker for the waiting scenario (default: idserver's)",
    )

    seed = commands.add_parser("seed", help="bulk-load residents into a database")
    seed.add_argument("--citizens", type=int, required=True)
    seed.add_argument(
        "--database-url",
        default="sqlite:///bench/results/seeded.sqlite3",
        help="SQLAlchemy URL (created and migrated if needed)",
    )
    profile = commands.add_parser(
        "profile", help="in-process: CPU, SQL statements and commits per login step (cProfile)"
    )
    profile.add_argument("--logins", type=int, default=200)
    profile.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    profile.add_argument("--cprofile", action="store_true", help="also print a cProfile report")
    profile.add_argument("--top", type=int, default=40, help="cProfile lines per ordering")
    profile.add_argument(
        "--noop-requests", type=int, default=2000, help="no-op requests timed (0: none)"
    )
    profile.add_argument("--json-to", help="write the result here only, print nothing")
    callgrind = commands.add_parser(
        "callgrind",
        help="instructions per login under valgrind (repeatable on a busy machine)",
    )
    callgrind.add_argument("--logins", type=int, default=20)
    callgrind.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    return parser


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _databases(choice: str) -> list[str]:
    have_pg = bool(os.environ.get("IDSERVER_TEST_DATABASE_URL"))
    if choice == "all":
        return ["sqlite", "postgresql"] if have_pg else ["sqlite"]
    if choice == "postgresql" and not have_pg:
        raise SystemExit("PostgreSQL needs IDSERVER_TEST_DATABASE_URL")
    return [choice]


def _server_env(args: argparse.Namespace) -> dict[str, str]:
    env = {}
    if args.long_poll_seconds is not None:
        env["IDSERVER_LONG_POLL_SECONDS"] = str(args.long_poll_seconds)
    if args.keepalive_seconds is not None:
        env["IDSERVER_LONG_POLL_KEEPALIVE_SECONDS"] = str(args.keepalive_seconds)
    return env


def _by_size(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median server CPU per login for each number of citizens, and its ratio to the smallest."""
    sizes: dict[int, list[float]] = {}
    for run in runs:
        if run["server_cpu_ms_per_login"]:
            sizes.setdefault(run["environment"]["citizens"], []).append(
                run["server_cpu_ms_per_login"]
            )
    medians = {size: statistics.median(values) for size, values in sorted(sizes.items())}
    smallest = next(iter(medians.values()))
    return {
        str(size): {
            "runs_ms": sizes[size],
            "median_ms": round(median, 2),
            "ratio_to_smallest": round(median / smallest, 3),
        }
        for size, median in medians.items()
    }


def _summary(result: dict[str, Any]) -> str:
    if result["scenario"] == "noop":
        return (
            f"  a no-op request (/jwks.json): {result['noop_server_cpu_ms']} ms server CPU; "
            f"as a bare WSGI call {result['noop_bare_wsgi_cpu_ms']} ms; the server adds "
            f"{result['server_overhead_ms']} ms (load {result['machine_load_average_1']})"
        )
    if result["scenario"] == "logins":
        steps = result["steps_ms"]
        return (
            f"  {result['logins']} logins ({result['failed']} failed) in "
            f"{result['measured_seconds']} s = {result['logins_per_second']}/s; server CPU "
            f"{result['server_cpu_ms_per_login']} ms/login; login p50/p95 "
            f"{steps['login_total']['p50']}/{steps['login_total']['p95']} ms; approval→desktop "
            f"p95 {result['approval_to_desktop_ms']['p95']} ms; a no-op request (/jwks.json) "
            f"{result['noop_server_cpu_ms']} ms server CPU"
        )
    return (
        f"  {result['desktops_waiting_at_end']} desktops waiting, "
        f"{result['long_polls_renewed_in_window']} long polls renewed: server CPU "
        f"{result['server_cpu_percent_of_one_core']} % of a core, +{result['extra_rss_mb']} MB "
        f"RSS; approval→desktop p95 {result['approval_to_desktop_ms']['p95']} ms"
    )


def _run(args: argparse.Namespace) -> int:
    from .scenarios import run_logins
    from .scenarios import run_noop
    from .waiting import run_waiting

    base_url = os.environ.get("IDSERVER_TEST_DATABASE_URL")
    kinds = ["custom"] if args.database_url else _databases(args.database)

    def environment(kind: str, **scenario: Any) -> Any:
        """A fresh database and server for one scenario, with this run's server options."""
        return prepared(
            kind,
            workers=args.workers,
            server_name=args.server,
            database_url=args.database_url,
            base_url=base_url,
            redis_url=args.redis_url,
            extra_env=_server_env(args),
            log=_log,
            **scenario,
        )

    outcome: list[dict[str, Any]] = []
    for kind in kinds:
        if args.scenario in ("logins", "all"):
            runs = []
            # One server per size, all started first; the sizes are then measured in turn,
            # ``rounds`` times, so that a change in the machine's load weighs on all alike.
            rounds = args.rounds or (2 if len(args.citizens) > 1 else 1)
            with contextlib.ExitStack() as servers:
                sized = [
                    servers.enter_context(
                        environment(
                            kind,
                            citizens=citizens,
                            phones=max(args.phones, args.users),
                            threads=args.threads,
                            history=args.history,
                        )
                    )
                    for citizens in args.citizens
                ]
                for _round in range(rounds):
                    for env in sized:
                        _log(
                            f"[{env.database.kind}] logins, {env.citizens:,} citizens: "
                            f"{args.users} users, {args.seconds} s …"
                        )
                        result = run_logins(
                            env, users=args.users, seconds=args.seconds, warmup=args.warmup
                        )
                        result = {"environment": env.describe(), **result}
                        runs.append(result)
                        _log(_summary(result))
            document: dict[str, Any] = {"machine": machine(), "runs": runs}
            if len({r["environment"]["citizens"] for r in runs}) > 1:
                by_size = _by_size(runs)
                document["cpu_per_login_by_citizens"] = by_size
                _log(f"  CPU per login by number of citizens: {by_size}")
            path = write_results(f"logins-{runs[0]['environment']['database']}", document)
            _log(f"  → {path}")
            outcome.append(document)
        if args.scenario == "noop":
            with environment(kind, citizens=0, phones=1, threads=args.threads) as env:
                _log(f"[{env.database.kind}] noop: {args.server}, {args.repeats} × 2,000 …")
                result = {"environment": env.describe(), **run_noop(env, repeats=args.repeats)}
                _log(_summary(result))
                document = {"machine": machine(), **result}
                path = write_results(f"noop-{args.server}-{env.database.kind}", document)
                _log(f"  → {path}")
            outcome.append(document)
        if args.scenario in ("waiting", "all"):
            with environment(
                kind,
                citizens=args.citizens[0],
                phones=max(4, min(args.phones, args.sample)),
                threads=args.waiting_threads,
            ) as env:
                _log(
                    f"[{env.database.kind}] waiting: {args.desktops} desktops, "
                    f"{args.wait_seconds} s …"
                )
                result = run_waiting(
                    env,
                    desktops=args.desktops,
                    seconds=args.wait_seconds,
                    ramp=args.ramp_seconds,
                    sample=args.sample,
                    log=_log,
                )
                document = {"machine": machine(), "environment": env.describe(), **result}
                _log(_summary(result))
                path = write_results(f"waiting-{env.database.kind}", document)
                _log(f"  → {path}")
                outcome.append(document)
    print(json.dumps(outcome, indent=2, ensure_ascii=False))
    if not args.no_targets:
        print(_targets(outcome, logins=args.explain_logins, base_url=base_url))
    return 0


def _targets(outcome: list[dict[str, Any]], *, logins: int, base_url: str | None) -> str:
    """Issue 16's targets judged from this run; each CPU target missed explained by an
    in-process profile of ``logins`` logins on the same database."""
    from .profile import profile_logins
    from .targets import explain
    from .targets import explain_noop
    from .targets import judge
    from .targets import render

    verdicts = judge(outcome)
    profiles: dict[str, dict[str, Any]] = {}
    for database in ("sqlite", "postgresql"):
        verdict = verdicts[f"login_cpu_{database}"]
        if verdict.met is False:
            _log(f"[{database}] profiling {logins} logins in-process to explain the CPU …")
            plain, traced = (
                profile_logins(
                    logins=logins,
                    database=database,
                    base_url=base_url,
                    cprofile=cprofile,
                    top=0,
                    noop_requests=0 if cprofile else 2000,
                )
                for cprofile in (False, True)
            )
            # the figures without the profiler's overhead, the split by layer from cProfile
            plain["own_time_by_layer_seconds"] = traced["own_time_by_layer_seconds"]
            profiles[database] = plain
            explain(verdict, plain)
    noop = verdicts["noop_cpu"]
    if noop.met is False:
        profile = profiles.get("sqlite") or profile_logins(
            logins=1, database="sqlite", base_url=None, cprofile=False, top=0
        )
        explain_noop(noop, profile["noop_bare_wsgi_cpu_ms"])
    document = {
        "machine": machine(),
        "targets": {
            key: {
                "target": f"{v.target.text} ≤ {v.target.limit:g} {v.target.unit}",
                "figures": v.figures,
                "met": v.met,
                "note": v.note,
                "explanation": v.explanation,
            }
            for key, v in verdicts.items()
        },
        "profiles": profiles,
    }
    path = write_results("targets", document)
    return render(verdicts) + f"\n\n→ {path}"


def _seed(args: argparse.Namespace) -> int:
    import secrets
    import tempfile
    from pathlib import Path

    from idserver.db import db

    from .seed import bulk_load_citizens
    from .seed import count_citizens
    from .seed import make_app

    with tempfile.TemporaryDirectory() as keys:
        app = make_app(
            database_url=args.database_url,
            issuer="http://localhost:5000",
            keys_dir=Path(keys),
            secret_key=secrets.token_urlsafe(32),
        )
        with app.app_context():
            loaded = bulk_load_citizens(db.engine, args.citizens, seed=secrets.randbits(32))
            db.engine.dispose()
    loaded.pop("sample_ids")
    loaded["total_citizens"] = count_citizens(app)
    loaded["database_url"] = args.database_url
    print(json.dumps(loaded, indent=2))
    return 0


def _profile(args: argparse.Namespace) -> int:
    from .profile import profile_logins
    from .profile import step_table

    result = profile_logins(
        logins=args.logins,
        database=args.database,
        base_url=os.environ.get("IDSERVER_TEST_DATABASE_URL"),
        cprofile=args.cprofile,
        top=args.top,
        noop_requests=args.noop_requests,
    )
    report = result.pop("profile", None)
    if args.json_to:
        with open(args.json_to, "w") as out:
            json.dump(result, out, indent=2, ensure_ascii=False)
        return 0
    result["machine"] = machine()
    print(json.dumps(result, indent=2, ensure_ascii=False))
    print()
    print(step_table(result))
    print("written to", write_results(f"profile-{args.database}", result))
    if report:
        print(report)
    return 0


def _callgrind(args: argparse.Namespace) -> int:
    from .callgrind import count_instructions

    result = count_instructions(logins=args.logins, database=args.database)
    result["machine"] = machine()
    print(json.dumps(result, indent=2, ensure_ascii=False))
    print()
    print(f"{'step':<18} {'SQL':>5} {'commits':>7}")
    for step, row in result["steps"].items():
        print(f"{step:<18} {row['sql']:>5g} {row['commits']:>7g}")
    print(
        f"login: {result['instructions_per_login_millions']:.2f} M instructions, "
        f"{result['sql_statements_per_login']:g} SQL statements, "
        f"{result['commits_per_login']:g} commits"
    )
    print("written to", write_results(f"callgrind-{args.database}", result))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["run", *argv]  # "run" is the default command
    args = _parser().parse_args(argv)
    if args.command == "seed":
        return _seed(args)
    if args.command == "profile":
        return _profile(args)
    if args.command == "callgrind":
        return _callgrind(args)
    return _run(args)


if __name__ == "__main__":
    sys.exit(main())
