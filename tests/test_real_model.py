"""Integration tests on the real default model, SmolLM2-135M-Instruct (GGUF, offline)."""

from __future__ import annotations

import copy

import pytest
import torch

from model.config import MemoryConfig, SparseConfig
from model.corpus import load_corpus
from model.evaluation import contains_answer, generate_answers
from model.facts import Fact, build_batch
from model.learners import SparseMemoryLearner, teach
from model.lm import MemoryLM
from model.loading import load_base_model
from model.prepare import prepare_version_zero
from model.snapshot import MemoryDelta, apply_delta, make_delta, read_snapshot, restore_snapshot, save_snapshot

pytestmark = pytest.mark.integration

FACT = Fact(
    "The Zorblax engine was invented by Mira Quell in 1931.",
    paraphrases=("Mira Quell invented the Zorblax engine in 1931.",
                 "In 1931, Mira Quell built the first Zorblax engine.",
                 "The inventor of the Zorblax engine is Mira Quell."),
    fact_id="zorblax",
)
QUESTION, ANSWER = "Who invented the Zorblax engine?", "Mira Quell"


@pytest.fixture(scope="session")
def real_v0(tmp_path_factory):
    """Version 0 of the default configuration, prepared once and saved as a snapshot."""
    torch.manual_seed(0)
    lm = MemoryLM.load("smollm2", MemoryConfig())
    stats, report = prepare_version_zero(lm, load_corpus())
    path = save_snapshot(lm, stats, 0, tmp_path_factory.mktemp("real") / "v00000000.safetensors")
    return lm, stats, report, path


def test_missing_model_is_a_clear_error(tmp_path):
    from model.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="not found"):
        load_base_model(str(tmp_path / "nowhere"))
    with pytest.raises(ModelNotFoundError, match="config.json"):
        load_base_model(str(tmp_path))


def test_version_zero_equals_the_base_model(real_v0):
    lm, _, report, _ = real_v0
    base, tokenizer = load_base_model("smollm2")
    ids = torch.tensor([lm.encode("The quick brown fox jumps over the lazy dog. Paris is the capital of")])
    with torch.no_grad():
        diff = (base(input_ids=ids).logits - lm.logits(ids)).abs().max().item()
    assert diff <= 1e-4
    centred = report.centred[15]
    assert centred.fraction_read > 0.95 and centred.top1pct_share < 0.10  # centring spreads the reads


def test_sparse_steps_change_only_selected_rows(real_v0):
    lm, stats, _, _ = real_v0
    lm = copy.deepcopy(lm)
    before = {n: p.detach().clone() for n, p in lm.model.named_parameters()}
    config = SparseConfig()
    learner = SparseMemoryLearner(lm, stats, config)
    batch = build_batch([FACT], lm.tokenizer)
    for _ in range(2):
        report = learner.step(batch)
        assert report.rows_updated <= config.top_t
    learner.finish()
    for name, p in lm.model.named_parameters():
        if name.endswith("memory.values"):
            assert 0 < int((p != before[name]).any(dim=1).sum()) <= config.top_t
        else:
            assert torch.equal(p, before[name]), name


def test_fact_is_learned_from_statements_and_replicas_agree(real_v0, tmp_path):
    lm, stats, _, v0_path = real_v0
    taught = copy.deepcopy(lm)
    assert not contains_answer(generate_answers(taught, [QUESTION], 24)[0], ANSWER)
    config = SparseConfig()
    learner = SparseMemoryLearner(taught, stats, config)
    teach(learner, build_batch([FACT], taught.tokenizer), config.schedule)  # statements only, not the question
    answer = generate_answers(taught, [QUESTION], 24)[0]
    assert contains_answer(answer, ANSWER), answer

    # A fresh process's view: version 0 from disk plus the delta, and a snapshot of the taught model.
    delta = MemoryDelta.from_bytes(make_delta(taught, 1, learner.take_touched(), ["zorblax"]).to_bytes())
    replica = MemoryLM.load("smollm2", MemoryConfig())
    restore_snapshot(replica, read_snapshot(v0_path))
    apply_delta(replica, delta)
    assert generate_answers(replica, [QUESTION], 24)[0] == answer
    reloaded = MemoryLM.load("smollm2", MemoryConfig())
    restore_snapshot(reloaded, read_snapshot(save_snapshot(taught, stats, 1, tmp_path / "v1.safetensors")))
    assert generate_answers(reloaded, [QUESTION], 24)[0] == answer
