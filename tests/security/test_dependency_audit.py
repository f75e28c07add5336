"""The pip-audit step of `make lint` (tools/dependency_audit.py) against a local OSV service.

The real pip-audit is run over a requirements file; only the vulnerability service is local
(pip-audit's ``--osv-url``), answering with the OSV record of a real advisory, so the tests need
no internet and show that a finding fails lint while an unreachable service only warns.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "tools"))
import dependency_audit  # noqa: E402

#: OSV record of CVE-2019-10906 (Jinja2 sandbox escape), as api.osv.dev serves it, shortened.
JINJA2_SANDBOX_ESCAPE = {
    "id": "GHSA-462w-v97r-4m45",
    "summary": "Jinja2 sandbox escape via string formatting",
    "aliases": ["CVE-2019-10906", "PYSEC-2019-217"],
    "published": "2019-04-10T14:30:13Z",
    "schema_version": "1.6.0",
    "affected": [
        {
            "package": {"ecosystem": "PyPI", "name": "jinja2"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.10.1"}]}],
        }
    ],
}


class _OsvHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        query = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        package, version = query["package"]["name"], query["version"]
        answer = (
            {"vulns": [JINJA2_SANDBOX_ESCAPE]} if (package, version) == ("jinja2", "2.10") else {}
        )
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def osv_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OsvHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/query"
    server.shutdown()
    server.server_close()


@pytest.fixture
def closed_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1/query"


def _audit(tmp_path: Path, requirements: str, url: str) -> int:
    (tmp_path / "requirements.txt").write_text(requirements)
    return dependency_audit.main(
        [
            "--service",
            "osv",
            "--",
            "--requirement",
            str(tmp_path / "requirements.txt"),
            "--no-deps",
            "--disable-pip",
            "--osv-url",
            url,
            "--cache-dir",
            str(tmp_path / "cache"),
            "--timeout",
            "5",
        ]
    )


def test_lint_fails_on_a_dependency_with_a_known_vulnerability(tmp_path, osv_url, capsys):
    assert _audit(tmp_path, "jinja2==2.10\nsegno==1.6.1\n", osv_url) == 1
    out = capsys.readouterr().out
    assert "VULNERABLE jinja2 2.10" in out
    assert "GHSA-462w-v97r-4m45" in out
    assert "fixed in 2.10.1" in out


def test_lint_passes_when_no_dependency_is_known_vulnerable(tmp_path, osv_url, capsys):
    assert _audit(tmp_path, "jinja2==3.1.6\nsegno==1.6.1\n", osv_url) == 0
    assert "no known vulnerabilities in 2 package(s)" in capsys.readouterr().out


def test_an_accepted_finding_is_shown_but_does_not_fail_lint(
    tmp_path, osv_url, capsys, monkeypatch
):
    monkeypatch.setitem(dependency_audit.ACCEPTED, "CVE-2019-10906", "the sandbox is not used")
    assert _audit(tmp_path, "jinja2==2.10\n", osv_url) == 0
    assert "accepted: the sandbox is not used jinja2 2.10" in capsys.readouterr().out


def test_an_unreachable_vulnerability_service_warns_and_lint_continues(
    tmp_path, closed_url, capsys, monkeypatch
):
    monkeypatch.delenv("DEPENDENCY_AUDIT_STRICT", raising=False)
    assert _audit(tmp_path, "jinja2==2.10\n", closed_url) == 0
    err = capsys.readouterr().err
    assert "WARNING osv: vulnerability service not reachable" in err
    assert "the check was incomplete" in err

    monkeypatch.setenv("DEPENDENCY_AUDIT_STRICT", "1")
    assert _audit(tmp_path, "jinja2==2.10\n", closed_url) == 1


def test_packages_a_service_skips_are_named_as_unchecked_not_passed(capsys):
    report = dependency_audit.read_report(
        {
            "dependencies": [
                {"name": "flask", "version": "3.1.2", "vulns": []},
                {
                    "name": "authlib",
                    "skip_reason": "Dependency not found on PyPI and could not be audited: "
                    "authlib (1.6.5)",
                },
                {"name": "idserver", "skip_reason": "distribution marked as editable"},
            ]
        }
    )
    assert report.checked == {"flask"}
    assert set(report.unchecked) == {"authlib"}


def test_a_broken_pip_audit_invocation_fails_lint(tmp_path, osv_url):
    assert _audit(tmp_path, "this is not a requirement ===\n", osv_url) == 2
