"""Keeping a converted copy of a GGUF model (model/loading.py), on the tiny model: what a failed save leaves."""

import logging

import pytest

from model import loading
from model.loading import ModelSource
from tests.tiny import tiny_model, tiny_tokenizer


@pytest.fixture
def tiny():
    tokenizer = tiny_tokenizer()
    return tiny_model(len(tokenizer)), tokenizer


def test_a_copy_is_kept_whole_or_not_at_all(tmp_path, tiny, monkeypatch, caplog):
    model, tokenizer = tiny
    source = ModelSource(tmp_path, "model.gguf")
    target = tmp_path / "cache" / "model-0123"

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(loading, "save_model", disk_full)
        loading._keep_conversion(source, target, model, tokenizer)
    assert list((tmp_path / "cache").iterdir()) == []  # no copy, and no half-written one beside it
    assert "cannot keep a converted copy" in caplog.text and "No space left" in caplog.text

    loading._keep_conversion(source, target, model, tokenizer)
    assert (target / "config.json").is_file() and (target / "model.safetensors").is_file()
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # a second process that converted too: the first copy stays
        loading._keep_conversion(source, target, model, tokenizer)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["model-0123"] and not caplog.text
