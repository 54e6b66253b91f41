"""schemathesis over the explorer's OpenAPI description: every route, with bodies, paths and
queries generated from the schema (a bounded, seeded number of examples), answers without a
5xx, with a documented status code and content type, and with a body that matches the
schema."""

from __future__ import annotations

import warnings

import pytest

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from unmask.serve import create_app  # noqa: E402
from unmask.testing import conv_region_model  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    APP = create_app({"toy": conv_region_model(3)}, image_size=32, max_bytes=100_000)
    SCHEMA = schemathesis.openapi.from_dict(APP.openapi())
    SCHEMA.app = APP

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@SCHEMA.parametrize()
@settings(
    max_examples=15,
    derandomize=True,  # seeded: the same examples at every run
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_keeps_to_its_schema(case) -> None:
    case.call_and_validate(base_url="http://127.0.0.1", checks=CHECKS)
