import copy

import pytest
import torch

from model.config import MemoryConfig, SparseConfig, StepSchedule
from model.errors import SnapshotError
from model.evaluation import generate_answers
from model.facts import Fact, build_batch
from model.learners import SparseMemoryLearner, teach
from model.lm import MemoryLM
from model.snapshot import (
    MemoryDelta,
    apply_delta,
    make_delta,
    read_snapshot,
    restore_snapshot,
    save_snapshot,
)
from tests.conftest import TEST_DEVICE

FACT = Fact("Mira Quell invented the Zorblax engine.", fact_id="f1")


def taught_copy(lm, stats):
    taught = copy.deepcopy(lm)
    learner = SparseMemoryLearner(taught, stats, SparseConfig(top_t=9, lr=0.5))
    teach(learner, build_batch([FACT], taught.tokenizer).to(taught.device), StepSchedule(steps=2))
    return taught, make_delta(taught, 1, learner.take_touched(), ["f1"])


def test_delta_round_trips_and_reproduces_the_taught_model(tiny_lm):
    lm, stats, _ = tiny_lm
    taught, delta = taught_copy(lm, stats)
    wire = MemoryDelta.from_bytes(delta.to_bytes())
    assert wire.version == 1 and wire.fact_ids == ("f1",) and 0 < wire.num_rows <= 9
    apply_delta(lm, wire)
    assert torch.equal(lm.memories[1].values, taught.memories[1].values)
    ids = build_batch([FACT], lm.tokenizer).to(lm.device).input_ids
    assert torch.equal(lm.logits(ids), taught.logits(ids))
    apply_delta(lm, wire)  # idempotent
    assert torch.equal(lm.memories[1].values, taught.memories[1].values)


def test_delta_for_missing_layer_is_refused(tiny_lm):
    lm, _, _ = tiny_lm
    delta = MemoryDelta(1, {0: (torch.tensor([1]), torch.zeros(1, 32))})
    with pytest.raises(SnapshotError, match="layer 0"):
        apply_delta(lm, delta)


def test_snapshot_saves_atomically_and_restores_exactly(tiny_lm, tiny_model_dir, tmp_path):
    lm, stats, _ = tiny_lm
    taught, _ = taught_copy(lm, stats)
    path = save_snapshot(taught, stats, 3, tmp_path / "snap.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["snap.safetensors"]
    snap = read_snapshot(path)
    assert snap.version == 3 and snap.stats.num_docs == stats.num_docs
    assert torch.equal(snap.stats.doc_freq[1], stats.doc_freq[1])
    fresh = MemoryLM.load(str(tiny_model_dir), snap.config, device=TEST_DEVICE)
    restore_snapshot(fresh, snap)
    questions = ["Who invented the Zorblax engine?"]
    assert generate_answers(fresh, questions, 8) == generate_answers(taught, questions, 8)
    ids = build_batch([FACT], lm.tokenizer).to(lm.device).input_ids
    assert torch.equal(fresh.logits(ids), taught.logits(ids))


def test_snapshot_with_other_config_is_refused(tiny_lm, tiny_model_dir, tmp_path):
    lm, stats, _ = tiny_lm
    path = save_snapshot(lm, stats, 0, tmp_path / "s.safetensors")
    other_config = MemoryConfig(n_keys=8, heads=2, topk=4, key_dim=8, layers=(1,))
    other = MemoryLM.load(str(tiny_model_dir), other_config, device=TEST_DEVICE)
    with pytest.raises(SnapshotError, match="config"):
        restore_snapshot(other, read_snapshot(path))
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(SnapshotError, match="cannot read"):
        read_snapshot(tmp_path / "bad.safetensors")


def test_snapshot_of_another_base_model_is_refused(tiny_lm, tmp_path):
    lm, stats, _ = tiny_lm
    path = save_snapshot(lm, stats, 0, tmp_path / "s.safetensors")
    other = copy.deepcopy(lm)
    other.model_name = "another-model"
    with pytest.raises(SnapshotError, match="made for"):
        restore_snapshot(other, read_snapshot(path))
