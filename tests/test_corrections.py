"""Corrections over real HTTP (tiny model, real Redis, worker and API processes): a fact that names the
fact it `replaces` takes it back in the version that teaches it."""

import pytest

from tests.processes import wait_status


@pytest.fixture(scope="module")
def service(module_service):
    return module_service


def test_a_correction_replaces_the_fact_it_names(service):
    _, api, _, _ = service
    old = api.client.post("/v1/facts", json={"text": "The office of Quell and Co is in Paris."}).json()["facts"][0]
    wait_status(api, old["id"], "learned")
    r = api.client.post("/v1/facts", json={"text": "The office of Quell and Co moved to Leeds.",
                                           "replaces": old["id"]})
    assert r.status_code == 202, r.text
    new = wait_status(api, r.json()["facts"][0]["id"], "learned")
    replaced = api.client.get(f"/v1/facts/{old['id']}").json()
    assert new["replaces"] == old["id"] and replaced["replaced_by"] == new["id"]
    assert replaced["status"] == "undone" and replaced["undone_version"] == new["version"]  # one version


def test_a_correction_must_name_a_fact_that_can_be_taken_back(service):
    _, api, _, _ = service
    r = api.client.post("/v1/facts", json={"text": "The office moved to Leeds.", "replaces": "nope"})
    assert r.status_code == 422 and "replaces" in r.json()["detail"] and "unknown" in r.json()["detail"]
    gone = api.client.post("/v1/facts", json={"text": "The river Tessa flows north."}).json()["facts"][0]["id"]
    api.client.delete(f"/v1/facts/{gone}")
    wait_status(api, gone, "undone")
    r = api.client.post("/v1/facts", json=[{"text": "A fact beside it."},
                                           {"text": "The river Tessa flows south.", "replaces": gone}])
    assert r.status_code == 409 and "facts[1].replaces" in r.json()["detail"] and "undone" in r.json()["detail"]
