"""Property-based fuzzing of the HTTP API from its own OpenAPI schema (schemathesis + hypothesis).

Valid and invalid requests are generated for every operation and sent to a real API process:
no answer may be a 5xx, and every 4xx must carry a message saying what is wrong.
"""

import os
from unittest import mock

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode

from service.app import create_app
from service.settings import ApiSettings

pytestmark = pytest.mark.slow  # many real processes

with mock.patch.dict(os.environ, {"SMFT_REDIS_URL": "redis://unused"}):
    SCHEMA = schemathesis.openapi.from_dict(create_app(ApiSettings()).openapi())
# Both requests that fit the schema and requests that break it (wrong types, missing fields, NUL bytes).
SCHEMA.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], allow_x00=True,
                                deterministic=True)


@pytest.fixture(scope="module")
def api(module_service):
    return module_service[1]


@SCHEMA.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_every_4xx_explains(case, api):
    response = case.call(base_url=api.url, timeout=60)
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
    if 400 <= response.status_code < 500:
        body = response.json()
        assert isinstance(body.get("detail"), str) and len(body["detail"]) >= 8, response.text
