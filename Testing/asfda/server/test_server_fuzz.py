"""Schema-driven fuzzing of every endpoint (schemathesis on the backend's own OpenAPI): no request, however
odd, gets a 5xx, and every answer fits the documented status codes, content types and schemas.

Strategies are drawn with Hypothesis directly (schemathesis' pytest plugin does not run on this pytest).
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    ignored_auth,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import FailureGroup  # noqa: E402

pytestmark = pytest.mark.slow
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    ignored_auth,
]
EXAMPLES = {GenerationMode.POSITIVE: 12, GenerationMode.NEGATIVE: 8}


def test_no_request_gets_a_server_error(small_server):
    headers = {"Authorization": f"Bearer {small_server.token}"}
    schema = schemathesis.openapi.from_url(f"{small_server.url}/openapi.json", headers=headers, timeout=30)
    operations = [result.ok() for result in schema.get_all_operations()]
    failures, calls = {}, 0
    for operation in operations:
        for mode, examples in EXAMPLES.items():

            @settings(
                max_examples=examples,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def fuzz(case):
                nonlocal calls
                calls += 1
                case.call_and_validate(base_url=small_server.url, headers=headers, checks=CHECKS, timeout=300)

            try:
                fuzz()
            except (Exception, FailureGroup) as error:  # collect every operation's failures, report them all
                failures[f"{operation.label} ({mode.value})"] = f"{type(error).__name__}: {error}"[:2000]
    print(f"\nfuzzed {len(operations)} operations with {calls} requests")
    assert len(operations) >= 17
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
