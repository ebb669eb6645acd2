"""A value table stored in bfloat16 (MemoryConfig.value_dtype): half the memory, the same learning, and every path
that writes the table (training, deltas, snapshots, undo) keeps its dtype."""

import copy
import dataclasses
import json

import pytest
import torch

from model.config import MemoryConfig, SparseConfig, StepSchedule
from model.corpus import split_corpus
from model.facts import Fact, build_batch
from model.learners import FullFinetuneLearner, LoraLearner, SparseMemoryLearner, lm_loss, teach
from model.lm import MemoryLM
from model.memory import ProductKeyMemory
from model.prepare import prepare_version_zero
from model.snapshot import MemoryDelta, apply_delta, load_snapshot, make_delta, save_snapshot
from model.undo import UndoRecord, revert
from tests.conftest import TEST_DEVICE, TINY_DOCS, TINY_MEMORY
from worker.settings import WorkerSettings

FACT = Fact("Mira Quell invented the Zorblax engine.", fact_id="a")


def test_config_and_settings_name_the_dtype(monkeypatch):
    config = MemoryConfig(n_keys=8, topk=4, value_dtype="bfloat16")
    assert MemoryConfig.from_json(config.to_json()) == config
    assert MemoryConfig.from_json(MemoryConfig(n_keys=8, topk=4, value_dtype="float32").to_json()).value_dtype \
        == "float32"
    older = {k: v for k, v in json.loads(MemoryConfig(n_keys=8, topk=4).to_json()).items() if k != "value_dtype"}
    assert MemoryConfig.from_json(json.dumps(older)).value_dtype == "float32"  # a snapshot from before the field
    with pytest.raises(ValueError, match="value_dtype"):
        MemoryConfig(n_keys=8, topk=4, value_dtype="float16")  # type: ignore[arg-type]
    monkeypatch.setenv("SMFT_MEMORY_VALUE_DTYPE", "bfloat16")
    assert WorkerSettings().memory_config().value_dtype == "bfloat16"


def test_a_bfloat16_table_reads_what_the_float32_table_reads():
    config = MemoryConfig(n_keys=8, heads=2, topk=3, key_dim=4, context_weight=0.0, value_dtype="float32")
    full = ProductKeyMemory(config, hidden_size=16)
    half = ProductKeyMemory(dataclasses.replace(config, value_dtype="bfloat16"), hidden_size=16)
    assert half.values.dtype == torch.bfloat16 and half.values.element_size() * 2 == full.values.element_size()
    with torch.no_grad():
        full.values.normal_(std=50)
        half.values.copy_(full.values)
    x = torch.randn(3, 5, 16)
    with torch.no_grad():
        out, expected = half(x), full(x)
    assert out.dtype == torch.float32
    assert float((out - expected).norm() / expected.norm()) < 1e-2  # rounding of the rows and of their sum



@pytest.mark.parametrize("learner", [LoraLearner, FullFinetuneLearner])
def test_baselines_train_through_a_bfloat16_table_as_through_a_float32_one(tables, learner):
    """LoRA and full finetuning send a gradient through the read weights into the table's reads (CUDA has no
    bfloat16 kernel for that in embedding_bag; model/memory.py gathers the rows instead)."""
    losses = {}
    for dtype, (lm, _) in copy.deepcopy(tables).items():
        with torch.no_grad():
            lm.memories[1].values.normal_(generator=torch.Generator().manual_seed(1), std=0.5)  # rows to read
        batch = build_batch([FACT], lm.tokenizer).to(lm.device)
        baseline = learner(lm)
        losses[dtype] = [baseline.step(batch).loss for _ in range(3)]
        assert lm.memories[1].values.dtype == (torch.bfloat16 if dtype == "bfloat16" else torch.float32)
    assert losses["bfloat16"][-1] < losses["bfloat16"][0]
    assert losses["bfloat16"] == pytest.approx(losses["float32"], rel=0.05)

@pytest.fixture(scope="module")
def tables(tiny_model_dir):
    """Version 0 of the tiny model twice, the same keys, float32 and bfloat16 value tables (tests change copies)."""
    corpus = split_corpus(TINY_DOCS, heldout_fraction=0.25)
    out = {}
    for dtype in ("float32", "bfloat16"):
        torch.manual_seed(0)
        lm = MemoryLM.load(str(tiny_model_dir), dataclasses.replace(TINY_MEMORY, value_dtype=dtype), TEST_DEVICE)
        stats, _ = prepare_version_zero(lm, corpus)
        out[dtype] = (lm, stats)
    return out


def test_the_table_keeps_its_dtype_in_the_model_and_learns_as_float32_does(tables):
    losses = {}
    for dtype, (lm, stats) in copy.deepcopy(tables).items():
        memory = lm.memories[1]
        assert memory.values.dtype == (torch.bfloat16 if dtype == "bfloat16" else torch.float32)
        assert memory.query.weight.dtype == torch.float32  # all else follows the model
        batch = build_batch([FACT], lm.tokenizer).to(lm.device)
        with torch.no_grad():
            before = float(lm_loss(lm, batch))
        learner = SparseMemoryLearner(lm, stats, SparseConfig(top_t=50, max_row_norm=5.0))
        teach(learner, batch, StepSchedule(steps=10))
        with torch.no_grad():
            losses[dtype] = (before, float(lm_loss(lm, batch)))
        assert memory.values.dtype == (torch.bfloat16 if dtype == "bfloat16" else torch.float32)
        assert float(memory.values.float().norm(dim=1).max()) <= 5.0 * (1 + 1e-2)  # the cap, up to rounding
    (before32, after32), (before16, after16) = losses["float32"], losses["bfloat16"]
    assert before16 == pytest.approx(before32)  # nothing written yet: zero is exact in any dtype
    assert after32 < before32 - 0.5
    assert after16 == pytest.approx(after32, rel=0.05, abs=0.05)


def test_deltas_snapshots_and_undo_keep_a_bfloat16_table(tables, tiny_model_dir, tmp_path):
    lm, stats = copy.deepcopy(tables["bfloat16"])
    values = lm.memories[1].values
    learner = SparseMemoryLearner(lm, stats, SparseConfig(top_t=50))
    teach(learner, build_batch([FACT], lm.tokenizer).to(lm.device), StepSchedule(steps=3))
    touched = learner.take_touched_with_before()
    record = UndoRecord.capture(lm, 1, ["a"], touched)
    assert record.rows[1][2].dtype == torch.bfloat16

    delta = MemoryDelta.from_bytes(make_delta(lm, 1, {1: touched[1][0]}).to_bytes())
    assert delta.rows[1][1].dtype == torch.bfloat16
    path = save_snapshot(lm, stats, 1, tmp_path / "v1.safetensors")
    loaded, _ = load_snapshot(str(tiny_model_dir), path, TEST_DEVICE)
    assert loaded.memories[1].values.dtype == torch.bfloat16 and torch.equal(loaded.memories[1].values, values)

    revert(loaded, record)  # the only fact taken back: version 0's zeros, exactly
    assert not loaded.memories[1].values.any()
    apply_delta(loaded, delta)
    assert torch.equal(loaded.memories[1].values, values)
