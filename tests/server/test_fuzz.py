"""Schemathesis against the app's own /openapi.json, in-process over a real LocalStore.

Every generated request, valid or not, must get an answer that the description
allows: no 5xx, a documented status, JSON matching the documented schema, and a 4xx
for data the schema forbids. The server refuses more than JSON Schema can say (names,
times, levels), so "schema-valid data must be accepted" is the one check left out.

Most random strings are not usable names; hooks swap in valid ones half of the time
so that generated bodies reach the store. Only values that match their described
pattern are swapped: a value schemathesis made to violate it (a negative case) must
reach the server as it is, to be refused.
"""

from __future__ import annotations

import atexit
import re
import shutil
import tempfile
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from ml_dash.names import NAME_PATTERN, PREFIX_PATTERN, SINGLE_NAME_PATTERN
from ml_dash.server import create_app
from ml_dash.stores.local import LocalStore
from ml_dash.wire import BATCH_ID_PATTERN

VALID_QUERY = {"prefix": "alice/proj/run-1", "name": "train/loss", "topic": "robot/pos", "owner": "alice"}
VALID_BODY = {"prefix": "alice/proj/run-1", "batchId": "batch-1"}
DESCRIBED = {"prefix": PREFIX_PATTERN, "name": NAME_PATTERN, "topic": NAME_PATTERN, "owner": SINGLE_NAME_PATTERN,
             "batchId": BATCH_ID_PATTERN}

_root = tempfile.mkdtemp(prefix="ml-dash-fuzz-")
atexit.register(shutil.rmtree, _root, ignore_errors=True)
app = create_app(LocalStore(_root), max_body=1024 * 1024)
# The event stream never ends by itself (tests/server/test_events.py drives it instead).
schema = schemathesis.openapi.from_asgi("/openapi.json", app).exclude(path="/api/v1/events")


def _valid_half(value: dict[str, Any], valid: dict[str, str]) -> Any:
    swapped = {k: (valid[k] if k in valid and isinstance(v, str) and re.search(DESCRIBED[k], v) else v)
               for k, v in value.items()}
    return st.sampled_from([value, swapped]) if swapped != value else st.just(value)


@schema.hook
def flatmap_query(context: Any, query: Any) -> Any:
    """Half of the queries get usable names (only where a string was drawn: negatives stay negative)."""
    return _valid_half(query, VALID_QUERY) if isinstance(query, dict) else st.just(query)


@schema.hook
def flatmap_body(context: Any, body: Any) -> Any:
    """Half of the bodies get a usable prefix and batch id."""
    return _valid_half(body, VALID_BODY) if isinstance(body, dict) else st.just(body)


FUZZ = settings(deadline=None, suppress_health_check=list(HealthCheck), database=None)


@schema.parametrize()
@settings(FUZZ, max_examples=25)
def test_every_route_answers_generated_requests_as_described(case: schemathesis.Case) -> None:
    case.call_and_validate(excluded_checks=[positive_data_acceptance])


# 300 per route: at 1,000 this took two thirds of the slow run (23 of 36 minutes on a
# loaded machine), which CI's time limit cannot afford as the browser tests arrive.
@pytest.mark.slow
@schema.parametrize()
@settings(FUZZ, max_examples=300)
def test_every_route_answers_many_generated_requests_as_described(case: schemathesis.Case) -> None:
    case.call_and_validate(excluded_checks=[positive_data_acceptance])
