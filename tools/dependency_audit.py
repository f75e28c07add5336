"""Audit the installed packages for known vulnerabilities: the `pip-audit` step of `make lint`.

    python tools/dependency_audit.py [--service pypi --service osv] [-- extra pip-audit arguments]

pip-audit's exit status alone cannot tell "found a vulnerability" from "could not ask": it exits 0
when PyPI's vulnerability feed skips every package, and 1 both for a finding and for a crash. So
each service is asked for a JSON report and the report is read here:

- a vulnerability not listed in ``ACCEPTED`` (with the reason it stands) → exit 1;
- the service could not be reached, or left packages unchecked → a warning naming what went
  unchecked, exit 0 (exit 1 with ``DEPENDENCY_AUDIT_STRICT=1``, for a CI that has internet);
- pip-audit failed for any other reason (bad arguments, unresolvable requirements) → exit 2.

Services are asked in turn (PyPI's JSON API, then OSV) until every package has been checked; a
package counts as checked when any service answered for it. docs/threat-model.md §6 lists the
accepted findings.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

#: Vulnerability ids (or aliases) that are known and accepted, each with the reason it stands.
#: Keep in step with docs/threat-model.md §6.
ACCEPTED: dict[str, str] = {}

#: Words in pip-audit's error output that mean the service could not be reached.
UNREACHABLE_SIGNS = (
    "ConnectionError",
    "ConnectTimeout",
    "ReadTimeout",
    "NameResolutionError",
    "Max retries exceeded",
    "Could not connect",
    "Connection refused",
    "timed out",
    "SSLError",
    "ServiceError",
    "HTTPError",
    "Temporary failure in name resolution",
)


@dataclass
class Finding:
    package: str
    version: str
    ids: list[str]
    fix_versions: list[str]
    description: str


@dataclass
class Report:
    """What one or more pip-audit runs established."""

    checked: set[str] = field(default_factory=set)
    unchecked: dict[str, str] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def merge(self, other: Report) -> None:
        self.checked |= other.checked
        self.unchecked = {
            name: reason
            for name, reason in {**self.unchecked, **other.unchecked}.items()
            if name not in self.checked
        }
        known = {(f.package, tuple(f.ids)) for f in self.findings}
        self.findings += [f for f in other.findings if (f.package, tuple(f.ids)) not in known]
        self.problems += other.problems


class AuditFailed(Exception):
    """pip-audit failed for a reason other than an unreachable service."""


def read_report(document: dict) -> Report:
    """Read pip-audit's ``--format json`` output."""
    report = Report()
    for dependency in document.get("dependencies", []):
        name = dependency["name"]
        if "skip_reason" in dependency:
            # Our own package, installed editable for development, is not a dependency.
            if "editable" not in dependency["skip_reason"]:
                report.unchecked[name] = dependency["skip_reason"]
            continue
        report.checked.add(name)
        for vuln in dependency.get("vulns", []):
            report.findings.append(
                Finding(
                    package=name,
                    version=dependency.get("version", "?"),
                    ids=[vuln["id"], *vuln.get("aliases", [])],
                    fix_versions=list(vuln.get("fix_versions", [])),
                    description=(vuln.get("description") or "").strip(),
                )
            )
    return report


def run_pip_audit(pip_audit: str, service: str, extra: list[str]) -> Report:
    """One pip-audit run against one vulnerability service."""
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / "report.json"
        command = [
            pip_audit,
            "--progress-spinner",
            "off",
            "--format",
            "json",
            "--output",
            str(output),
            "--vulnerability-service",
            service,
            *extra,
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
        if output.exists() and output.stat().st_size:
            return read_report(json.loads(output.read_text()))
    errors = done.stderr.strip()
    if any(sign in errors for sign in UNREACHABLE_SIGNS):
        last_line = errors.splitlines()[-1] if errors else "no answer"
        report = Report()
        report.problems.append(f"{service}: vulnerability service not reachable ({last_line})")
        return report
    raise AuditFailed(f"pip-audit ({service}) exited {done.returncode}: {errors or done.stdout}")


def default_pip_audit() -> str:
    beside = Path(sys.executable).with_name("pip-audit")
    return str(beside) if beside.exists() else "pip-audit"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--service", action="append", choices=["pypi", "osv"], default=[])
    parser.add_argument("--pip-audit", default=default_pip_audit())
    parser.add_argument("extra", nargs="*", help="arguments passed on to pip-audit")
    args = parser.parse_args(argv)
    extra = args.extra or ["--skip-editable"]
    strict = os.environ.get("DEPENDENCY_AUDIT_STRICT") == "1"

    report = Report()
    for service in args.service or ["pypi", "osv"]:
        try:
            report.merge(run_pip_audit(args.pip_audit, service, extra))
        except (AuditFailed, OSError) as error:
            print(f"dependency audit: ERROR {error}", file=sys.stderr)
            return 2
        if report.findings or (report.checked and not report.unchecked):
            break

    open_findings = [f for f in report.findings if not any(i in ACCEPTED for i in f.ids)]
    for finding in report.findings:
        accepted = next((ACCEPTED[i] for i in finding.ids if i in ACCEPTED), None)
        label = f"accepted: {accepted}" if accepted else "VULNERABLE"
        fixed = ", ".join(finding.fix_versions) or "no fix yet"
        print(
            f"dependency audit: {label} {finding.package} {finding.version}"
            f" {'/'.join(finding.ids)} (fixed in {fixed}) {finding.description[:160]}"
        )
    for problem in report.problems:
        print(f"dependency audit: WARNING {problem}", file=sys.stderr)
    if report.unchecked:
        names = ", ".join(sorted(report.unchecked))
        print(
            f"dependency audit: WARNING could not check {len(report.unchecked)} package(s)"
            f" for known vulnerabilities: {names}",
            file=sys.stderr,
        )
    could_not_check = bool(report.unchecked) or (not report.checked and bool(report.problems))
    if open_findings:
        print(f"dependency audit: FAILED, {len(open_findings)} known vulnerability(ies)")
        return 1
    if could_not_check:
        print(
            "dependency audit: WARNING the check was incomplete (no vulnerability service"
            " answered for every package); nothing known vulnerable among "
            f"{len(report.checked)} checked package(s)",
            file=sys.stderr,
        )
        return 1 if strict else 0
    print(f"dependency audit: no known vulnerabilities in {len(report.checked)} package(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
