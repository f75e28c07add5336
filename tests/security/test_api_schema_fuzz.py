"""Schemathesis against the phone API's own OpenAPI document, through the WSGI app."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from schemathesis.checks import positive_data_acceptance


def test_phone_api_keeps_its_documented_contract(app):
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def run(case):
            # A well-formed but wrong activation code is rightly refused: the schema cannot know.
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        try:
            run()
        except Exception as exc:
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
