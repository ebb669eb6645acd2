"""Documents: how a text is split into statements, and teaching, following and undoing one over real HTTP
(tiny model, real Redis, real worker and API processes)."""

import json
import subprocess
import sys

import pytest

from model.documents import split_statements
from tests.processes import ROOT, wait_status


def test_sentences_become_statements_that_each_name_their_subject():
    text = ("Mira Quell invented the Zorblax engine in 1931. She was born in Port Orrin.\n"
            "Dr. J. R. Dalton measured its speed at 3.5 m/s in 1932.\n\n"
            "- The office moved to Leeds in 2026\n"
            "* Our support line opens at 9 a.m. on weekdays\n"
            "Pricing\n"
            "The basic plan costs $12.50 per month.\n"
            "Contacts:\n"
            "Write to Ada Brook for support. Thanks!")
    assert split_statements(text) == [
        "Mira Quell invented the Zorblax engine in 1931. She was born in Port Orrin.",  # "She" needs Mira
        "Dr. J. R. Dalton measured its speed at 3.5 m/s in 1932.",  # abbreviations, initials, decimals
        "The office moved to Leeds in 2026",  # list items end at the line
        "Our support line opens at 9 a.m. on weekdays",
        "Pricing: The basic plan costs $12.50 per month.",  # a heading leads into what follows it
        "Contacts: Write to Ada Brook for support. Thanks!",  # a fragment joins the sentence before
    ]


def test_no_statement_is_longer_than_the_limit_where_words_allow():
    long = "The ledger lists " + ", ".join(f"item {i} at {i} crowns" for i in range(60)) + "."
    parts = split_statements(long, max_chars=120)
    assert len(parts) > 1 and all(len(p) <= 120 for p in parts)
    assert " ".join(parts).split() == long.split()  # nothing lost, nothing reordered


def test_text_without_statements():
    assert split_statements("") == [] and split_statements(" \n\n - \n") == []


@pytest.fixture(scope="module")
def service(module_service):
    return module_service


DOCUMENT = {"title": "River notes", "text": "The river Tessa flows to the sea. It floods every spring.\n\n"
                                            "The fox jumps over the lazy dog twice."}


def test_a_document_is_taught_statement_by_statement_and_taken_back_whole(service):
    _, api, _, _ = service
    r = api.client.post("/v1/documents", json=DOCUMENT)
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert [f["text"] for f in accepted["facts"]] == [
        "The river Tessa flows to the sea. It floods every spring.", "The fox jumps over the lazy dog twice."]
    for fact in accepted["facts"]:
        body = wait_status(api, fact["id"], "learned")
        assert body["document"] == accepted["id"]
    doc = api.client.get(f"/v1/documents/{accepted['id']}").json()
    assert doc["status"] == "learned" and doc["counts"] == {"learned": 2} and doc["title"] == "River notes"
    assert doc["chars"] == len(DOCUMENT["text"]) and all(f["version"] >= 1 for f in doc["facts"])

    retry = api.client.post("/v1/documents", json={**DOCUMENT, "client_id": "notes-1"})
    again = api.client.post("/v1/documents", json={**DOCUMENT, "client_id": "notes-1"})
    assert again.status_code == 202 and again.json()["duplicate"] and again.json()["id"] == retry.json()["id"]
    other = api.client.post("/v1/documents", json={**DOCUMENT, "text": "Other text entirely.",
                                                   "client_id": "notes-1"})
    assert other.status_code == 409 and "client_id" in other.json()["detail"]

    undo = api.client.delete(f"/v1/documents/{accepted['id']}")
    assert undo.status_code == 202 and undo.json()["undo_requested"]
    for fact in accepted["facts"]:
        wait_status(api, fact["id"], "undone")
    doc = api.client.get(f"/v1/documents/{accepted['id']}").json()
    assert doc["status"] == "undone" and doc["counts"] == {"undone": 2}
    assert api.client.delete(f"/v1/documents/{accepted['id']}").status_code == 202  # twice is once


@pytest.mark.parametrize("body,code,words", [
    ({"title": "t"}, 422, "text"),
    ({"title": "t", "text": "   "}, 422, "text"),
    ({"title": " ", "text": "A river flows."}, 422, "title"),
    ({"title": "t", "text": "x " * 15000}, 422, "characters"),
    ({"title": "t", "text": "A river flows.", "pages": 3}, 422, "pages"),
    ({"title": "t", "text": " - \n * \n"}, 422, "no statement"),
    ({"title": "t", "text": " ".join(f"River {i} flows to the sea." for i in range(200))}, 413, "statements"),
])
def test_bad_documents_get_a_4xx_that_says_what_is_wrong(service, body, code, words):
    _, api, _, _ = service
    r = api.client.post("/v1/documents", json=body)
    assert r.status_code == code, r.text
    assert words.lower() in r.json()["detail"].lower()
    assert api.client.get("/v1/documents/nope").status_code == 404
    assert api.client.delete("/v1/documents/nope").status_code == 404


def test_the_cli_teaches_a_document_and_a_correction(service, tmp_path):
    _, api, _, _ = service
    notes = tmp_path / "notes.txt"
    notes.write_text("Ada Brook keeps the ledger. She signs it every Friday.\n- The vault opens at noon\n")

    def smft(*args: str) -> dict:
        out = subprocess.run([sys.executable, "-m", "cli", *args, "--url", api.url], capture_output=True, text=True,
                             cwd=ROOT, timeout=120, check=True)
        return json.loads(out.stdout)

    doc = smft("teach-document", str(notes))
    assert [f["text"] for f in doc["facts"]] == ["Ada Brook keeps the ledger. She signs it every Friday.",
                                                 "The vault opens at noon"]
    assert api.client.get(f"/v1/documents/{doc['id']}").json()["title"] == "notes.txt"
    old = doc["facts"][1]["id"]
    fix = smft("teach", "The vault opens at one.", "--replaces", old)["facts"][0]["id"]
    assert wait_status(api, fix, "learned")["replaces"] == old
