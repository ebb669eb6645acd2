"""Tokens, safe binding, rate limits, body limits, request ids and JSON logs (tiny model, real HTTP)."""

import json

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from service.settings import ApiSettings
from tests.processes import Api


@pytest.fixture(scope="module")
def strict_api(module_service):
    """A second API replica on the shared service with a token, protected reads and tight limits."""
    env, _, _, log = module_service
    env = {**env, "SMFT_API_TOKEN": "s3cret", "SMFT_PROTECT_READS": "true", "SMFT_TEACH_RATE_PER_MIN": "6",
           "SMFT_TEACH_BURST": "3", "SMFT_MAX_FACTS_PER_REQUEST": "2", "SMFT_MAX_BODY_BYTES": "4096"}
    api = Api(env, log)
    api.wait_ready()
    api.client.headers["Authorization"] = "Bearer s3cret"
    yield api, log
    api.stop()


def test_without_a_token_the_api_only_binds_to_loopback():
    assert ApiSettings(host="127.0.0.1").host == "127.0.0.1"
    assert ApiSettings(host="::1").host == "::1"
    with pytest.raises(ValidationError, match="without SMFT_API_TOKEN"):
        ApiSettings(host="0.0.0.0")
    assert ApiSettings(host="0.0.0.0", api_token="t").host == "0.0.0.0"
    with pytest.raises(ValidationError, match="PROTECT_READS"):
        ApiSettings(protect_reads=True)


def test_protected_reads_need_the_token_but_probes_stay_open(strict_api):
    api, _ = strict_api
    anonymous = {"Authorization": ""}
    assert api.client.get("/healthz", headers=anonymous).status_code == 200
    assert api.client.get("/readyz", headers=anonymous).status_code == 200
    for path in ("/v1/status", "/v1/monitor", "/metrics", "/v1/models"):
        assert api.client.get(path, headers=anonymous).status_code == 401, path
        assert api.client.get(path).status_code == 200, path


def test_teaching_is_rate_limited_per_client_with_retry_after(strict_api):
    api, _ = strict_api
    facts = [{"text": f"The beacon number {i} shines over Lake Orvin."} for i in range(2)]
    assert api.client.post("/v1/facts", json=facts).status_code == 202  # 2 of a burst of 3
    r = api.client.post("/v1/facts", json=facts)  # 2 more: over the burst
    assert r.status_code == 429 and "rate limit" in r.json()["detail"]
    assert int(r.headers["Retry-After"]) >= 1


def test_oversized_bodies_get_413(strict_api):
    api, _ = strict_api
    r = api.client.post("/v1/facts", json={"text": "x" * 5000})
    assert r.status_code == 413 and "bytes" in r.json()["detail"]

    def chunks():  # no Content-Length: the limit applies while the body streams in
        yield b'{"text": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}'

    r = api.client.post("/v1/facts", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text


def test_request_ids_json_logs_and_request_metrics(strict_api):
    api, log = strict_api
    r = api.client.post("/v1/query", json={"question": "Who?", "max_new_tokens": 1},
                        headers={"X-Request-ID": "trace-42"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "trace-42"
    assert len(api.client.get("/v1/status").headers["x-request-id"]) == 16  # made up when not given
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    access = [x for x in lines if x.get("request_id") == "trace-42" and x["logger"] == "smft.access"]
    assert access and access[0]["path"] == "/v1/query" and access[0]["status"] == 200
    assert any("fact_id" in x and x["msg"] == "fact queued" for x in lines)
    assert not any("s3cret" in line for line in log.read_text().splitlines())  # tokens are never logged
    for method in ("BREW", "FROB"):  # a method nobody serves is one label, not a series per method
        api.client.request(method, "/v1/status")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(api.client.get("/metrics").text) for s in family.samples}
    query = (("method", "POST"), ("route", "/v1/query"))
    assert samples[("smft_http_requests_total", (*query, ("status", "200")))] >= 1
    assert samples[("smft_http_request_duration_seconds_bucket", (("le", "+Inf"), *query))] >= 1
    assert samples[("smft_http_request_duration_seconds_count", query)] >= 1
    methods = {dict(labels)["method"] for name, labels in samples if name == "smft_http_requests_total"}
    assert "other" in methods and not methods & {"BREW", "FROB"}
    assert any(name == "process_resident_memory_bytes" for name, _ in samples)  # the process' own metrics


def test_a_web_page_cannot_teach_a_tokenless_api_through_its_visitors_browser(module_service):
    _, api, _, _ = module_service
    body = '{"text": "A page taught this behind its owner\'s back."}'
    for headers in ({}, {"content-type": "text/plain"}, {"content-type": "application/x-www-form-urlencoded"}):
        r = api.client.post("/v1/facts", content=body, headers=headers)  # what a page may send without asking
        assert r.status_code == 415 and "application/json" in r.json()["detail"], (headers, r.text)
    r = api.client.post("/v1/facts", content=body, headers={"content-type": "application/json",
                                                           "host": "evil.example"})  # DNS rebinding
    assert r.status_code == 403 and "evil.example" in r.json()["detail"]
    assert api.client.get("/v1/status", headers={"host": "evil.example:8000"}).status_code == 403
    assert api.client.get("/v1/status", headers={"host": f"localhost:{api.port}"}).status_code == 200
    assert api.client.post("/v1/monitor/evaluate").status_code == 202  # no body: no type needed


def test_with_a_token_any_host_name_is_served(strict_api):
    api, _ = strict_api
    assert api.client.get("/v1/status", headers={"host": "smft.internal.example"}).status_code == 200


def test_the_private_redis_needs_its_password_and_only_its_owner_reads_its_files(tmp_path):
    import stat

    import redis

    from service.processes import RedisServer

    server = RedisServer(tmp_path / "redis").start()
    try:
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=server.port).ping()  # another local user, without the password
        assert redis.Redis.from_url(server.url).ping()
        for path in (server.directory, server.directory / "redis.conf"):
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
        assert server.password not in " ".join(server.proc.args)  # `ps` shows the command line to everyone
    finally:
        server.stop()
