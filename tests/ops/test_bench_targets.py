"""`make bench` judges issue 16's targets and explains each CPU target it misses.

The verdicts are computed from result documents shaped as ``python -m bench run`` writes them;
the explanation from a real in-process profile of complete logins (``bench.profile``), so this
also keeps the benchmark's login driver working as the login path changes.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from bench.profile import profile_logins
from bench.targets import LAYERS
from bench.targets import explain
from bench.targets import judge
from bench.targets import layer_of
from bench.targets import own_time_by_layer
from bench.targets import render


def _logins(database: str, cpu: float, **extra: Any) -> dict[str, Any]:
    return {
        "scenario": "logins",
        "environment": {"database": database, "server": "gunicorn", "citizens": 1000},
        "server_cpu_ms_per_login": cpu,
        "noop_server_cpu_ms": 0.6,
        **extra,
    }


def _waiting(percent: float, extra_mb: float, p95: float) -> dict[str, Any]:
    return {
        "scenario": "waiting",
        "desktops": 1000,
        "server_cpu_percent_of_one_core": percent,
        "extra_rss_mb": extra_mb,
        "approval_to_desktop_ms": {"p95": p95},
    }


def test_judges_each_target_from_the_runs_documents() -> None:
    outcome = [
        {"runs": [_logins("sqlite", 9.5)]},
        {"runs": [_logins("postgresql", 20.0, postgres_cpu_ms_per_login=6.0)]},
        _waiting(1.4, 60.0, 37.0),
        _waiting(2.9, 61.0, 40.0),
    ]
    verdicts = judge(outcome)
    assert verdicts["login_cpu_sqlite"].met is True
    assert verdicts["login_cpu_postgresql"].met is False
    assert "6 ms in PostgreSQL's backends" in verdicts["login_cpu_postgresql"].note
    assert verdicts["noop_cpu"].figures == [0.6, 0.6]
    assert verdicts["noop_cpu"].met is False
    assert verdicts["waiting_cpu"].met is True
    assert verdicts["waiting_memory"].met is True
    assert verdicts["approval_p95"].figures == [37.0, 40.0]
    assert verdicts["citizens_ratio"].met is None
    assert "--citizens 1000,1000000" in verdicts["citizens_ratio"].note  # how to measure it


def test_a_waiting_target_is_missed_when_any_single_run_misses_it() -> None:
    verdicts = judge([_waiting(1.3, 60.0, 30.0), _waiting(3.2, 60.0, 30.0)])
    assert verdicts["waiting_cpu"].met is False
    assert "MISSED" in render(verdicts)


def test_targets_not_measured_are_said_so_not_passed() -> None:
    verdicts = judge([{"runs": [_logins("sqlite", 30.0)]}])
    assert verdicts["login_cpu_postgresql"].met is None
    assert verdicts["waiting_cpu"].met is None
    table = render(verdicts)
    assert re.search(r"PostgreSQL .* not measured", table)


def test_the_size_ratio_is_read_from_a_run_over_several_sizes() -> None:
    document = {
        "runs": [],
        "cpu_per_login_by_citizens": {
            "1000": {"median_ms": 30.0, "ratio_to_smallest": 1.0},
            "1000000": {"median_ms": 34.5, "ratio_to_smallest": 1.15},
        },
    }
    verdict = judge([document])["citizens_ratio"]
    assert verdict.figures == [1.15]
    assert verdict.met is False


@pytest.mark.parametrize(
    ("filename", "function", "layer"),
    [
        ("/v/lib/python3.11/site-packages/sqlalchemy/sql/coercions.py", "expect", "sqlalchemy"),
        ("/v/lib/python3.11/site-packages/werkzeug/local.py", "__get__", "framework"),
        ("/v/lib/python3.11/site-packages/flask_limiter/extension.py", "_check", "framework"),
        ("/v/lib/python3.11/site-packages/joserfc/jws.py", "serialize", "protocols"),
        ("/w/main/idserver/crosslogin/service.py", "approve", "ours"),
        ("~", "<method 'execute' of 'sqlite3.Cursor' objects>", "driver"),
        ("~", "<built-in method builtins.isinstance>", "python"),
        ("/usr/lib/python3.11/json/encoder.py", "iterencode", "python"),
    ],
)
def test_layer_of_a_profiled_function(filename: str, function: str, layer: str) -> None:
    assert layer_of(filename, function) == layer


class _Stats:
    """The part of ``pstats.Stats`` that ``own_time_by_layer`` reads."""

    def __init__(self, table: dict[Any, Any]) -> None:
        self.stats = table


def test_python_own_time_is_charged_to_the_layers_that_called_it() -> None:
    flask = ("/v/site-packages/flask/app.py", 1, "dispatch")
    orm = ("/v/site-packages/sqlalchemy/orm/session.py", 1, "execute")
    dumps = ("/usr/lib/python3.11/json/__init__.py", 1, "dumps")
    builtin = ("~", 0, "<built-in method builtins.isinstance>")
    stats = _Stats(
        {
            flask: (1, 1, 1.0, 4.0, {}),
            orm: (1, 1, 2.0, 3.0, {}),
            # json.dumps: 0.5 s of its own, called from Flask only
            dumps: (1, 1, 0.5, 0.5, {flask: (1, 1, 0.5, 0.5)}),
            # isinstance: 0.4 s, three quarters on SQLAlchemy's edge, a quarter under json.dumps
            builtin: (4, 4, 0.4, 0.4, {orm: (3, 3, 0.3, 0.3), dumps: (1, 1, 0.1, 0.1)}),
        }
    )
    own = own_time_by_layer(stats)
    assert own["framework"] == pytest.approx(1.0 + 0.5 + 0.1)
    assert own["sqlalchemy"] == pytest.approx(2.0 + 0.3)
    assert "python" not in own


def test_time_spent_waiting_for_the_database_server_is_not_counted_as_cpu() -> None:
    wait = ("/v/site-packages/psycopg/connection.py", 1, "wait")
    orm = ("/v/site-packages/sqlalchemy/orm/session.py", 1, "execute")
    stats = _Stats({wait: (9, 9, 5.0, 5.0, {}), orm: (1, 1, 2.0, 7.0, {})})
    own = own_time_by_layer(stats, waiting=4.5)
    assert own["waiting"] == pytest.approx(4.5)
    assert own["driver"] == pytest.approx(0.5)
    assert own["sqlalchemy"] == pytest.approx(2.0)
    # never more than the driver's own time: the rest was not spent in the driver
    assert own_time_by_layer(stats, waiting=9.0)["driver"] == 0.0


def test_a_missed_login_target_is_explained_from_a_real_profile() -> None:
    plain = profile_logins(
        logins=3, database="sqlite", base_url=None, cprofile=False, top=0, noop_requests=50
    )
    traced = profile_logins(
        logins=3, database="sqlite", base_url=None, cprofile=True, top=0, noop_requests=0
    )
    assert plain["noop_bare_wsgi_cpu_ms"] > 0
    plain["own_time_by_layer_seconds"] = traced["own_time_by_layer_seconds"]
    served = plain["server_cpu_ms_per_login"] * 1.5  # a served figure above the in-process one
    verdicts = judge([{"runs": [_logins("sqlite", served)]}])
    verdict = verdicts["login_cpu_sqlite"]
    assert verdict.met is False
    explain(verdict, plain)
    text = "\n".join(verdict.explanation)
    assert f"{plain['sql_statements_per_login']:g} SQL statements" in text
    for step in ("authorize", "approve", "token"):
        assert step in text
    layers = {
        layer: float(ms)
        for ms, layer in re.findall(r"^\s+([\d.]+) ms (\S.*?):", text, re.MULTILINE)
    }
    assert LAYERS["sqlalchemy"] in layers and LAYERS["server"] in layers
    # the layers add up to the served figure: nothing is left out and nothing counted twice
    assert sum(layers.values()) == pytest.approx(served, abs=0.1)
    assert "Why missed" in render(verdicts)
