from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from model.config import MemoryConfig
from model.corpus import split_corpus
from model.lm import MemoryLM
from model.prepare import prepare_version_zero
from tests.tiny import save_tiny_model

TINY_MEMORY = MemoryConfig(n_keys=16, heads=2, topk=4, key_dim=8, layers=(1,))
TINY_DOCS = [f"Document {i}: the river flows to the sea and the fox jumps {i} times." for i in range(12)]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def _tiny_v0(tiny_model_dir):
    torch.manual_seed(0)
    lm = MemoryLM.load(str(tiny_model_dir), TINY_MEMORY)
    corpus = split_corpus(TINY_DOCS, heldout_fraction=0.25)
    stats, _ = prepare_version_zero(lm, corpus)
    return lm, stats, corpus


@pytest.fixture
def tiny_lm(_tiny_v0):
    """A fresh copy of the version-0 tiny model (tests may change it freely)."""
    lm, stats, corpus = _tiny_v0
    return copy.deepcopy(lm), copy.deepcopy(stats), corpus
