"""Integration tests on the real default model, SmolLM2-135M-Instruct (GGUF, offline)."""

from __future__ import annotations

import copy

import pytest
import torch

from model.config import MemoryConfig, SparseConfig
from model.evaluation import contains_answer, generate_answers
from model.facts import Fact, build_batch
from model.learners import SparseMemoryLearner, teach
from model.lm import MemoryLM
from model.loading import load_base_model
from model.probe import read_probe
from model.questions import with_synthetic_questions
from model.snapshot import (
    MemoryDelta,
    apply_delta,
    make_delta,
    read_snapshot,
    restore_snapshot,
    save_snapshot,
)
from model.undo import UndoRecord, revert
from tests.conftest import REAL_ANSWER as ANSWER
from tests.conftest import REAL_FACT as FACT
from tests.conftest import REAL_QUESTION as QUESTION
from tests.conftest import TEST_DEVICE

pytestmark = pytest.mark.integration


def test_missing_model_is_a_clear_error(tmp_path):
    from model.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="not found"):
        load_base_model(str(tmp_path / "nowhere"))
    with pytest.raises(ModelNotFoundError, match=r"config\.json"):
        load_base_model(str(tmp_path))


def test_the_model_converted_once_loads_as_from_its_gguf_file(tmp_path, monkeypatch, caplog):
    caplog.set_level("INFO", logger="model.loading")
    cache = tmp_path / "cache"
    monkeypatch.setenv("SMFT_MODEL_CACHE", str(cache))
    read, tokenizer = load_base_model("smollm2")  # from the GGUF file; keeps a converted copy
    (kept,) = cache.iterdir()
    copied, copied_tokenizer = load_base_model("smollm2")
    assert f"(converted: {kept})" in caplog.text
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Où est Zürich? 東京?"}]
    prompts = [t.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
               for t in (tokenizer, copied_tokenizer)]
    assert prompts[0] == prompts[1] and tokenizer(prompts[0]) == copied_tokenizer(prompts[1])
    assert copied_tokenizer.pad_token_id == tokenizer.pad_token_id
    assert read.state_dict().keys() == copied.state_dict().keys()
    assert all(torch.equal(v, copied.state_dict()[k]) for k, v in read.state_dict().items())
    # A copy that no longer loads is read from the GGUF file again and kept anew.
    (kept / "model.safetensors").write_bytes(b"not a tensor file")
    again, _ = load_base_model("smollm2")
    assert "does not load" in caplog.text and (kept / "model.safetensors").stat().st_size > 1 << 20
    assert torch.equal(again.lm_head.weight, read.lm_head.weight)


def test_version_zero_equals_the_base_model(real_v0):
    lm, _, report, _ = real_v0
    base, _ = load_base_model("smollm2", TEST_DEVICE)
    text = "The quick brown fox jumps over the lazy dog. Paris is the capital of"
    ids = torch.tensor([lm.encode(text)], device=lm.device)
    with torch.no_grad():
        diff = (base(input_ids=ids).logits - lm.logits(ids)).abs().max().item()
    assert diff <= 1e-4
    # The default memory sits at layer 24; centring (and the context query) spread its reads over the table. The
    # shipped corpus makes about 10 reads per slot of the 1,048,576-row table: 76.9% of its slots read, the busiest
    # 1% taking 28.7% of them, usage entropy 0.907 (of 262,144 rows: 98.8%, 19.1%, 0.941).
    centred = report.centred[24]
    assert centred.fraction_read > 0.7 and centred.top1pct_share < 0.35 and centred.entropy > 0.85, centred


def test_sparse_steps_change_only_selected_rows_and_replicas_answer_as_the_taught_model(real_v0, tmp_path):
    """Two steps on the fact's statements: only rows the step selected change, and a fresh process's view
    of that version (version 0 from disk plus the delta, or the version's own snapshot) answers exactly as
    the model that took them. That the fact is then learned, end to end, is test_real_service's."""
    lm, stats, _, v0_path = real_v0
    lm = copy.deepcopy(lm)
    before = {n: p.detach().clone() for n, p in lm.model.named_parameters()}
    config = SparseConfig()
    learner = SparseMemoryLearner(lm, stats, config)
    batch = build_batch([FACT], lm.tokenizer).to(lm.device)
    for _ in range(2):
        report = learner.step(batch)
        assert report.rows_updated <= config.top_t
    learner.finish()
    for name, p in lm.model.named_parameters():
        if name.endswith("memory.values"):
            assert 0 < int((p != before[name]).any(dim=1).sum()) <= config.top_t
        else:
            assert torch.equal(p, before[name]), name

    ids = torch.tensor([lm.encode(FACT.text)], device=lm.device)  # text that reads the rows the steps wrote

    def same_as_taught(model: MemoryLM) -> bool:
        with torch.no_grad():
            close = torch.allclose(model.logits(ids), taught, atol=1e-5)
        return close and generate_answers(model, [QUESTION], 24)[0] == answer

    with torch.no_grad():
        taught = lm.logits(ids)
    answer = generate_answers(lm, [QUESTION], 24)[0]
    delta = MemoryDelta.from_bytes(make_delta(lm, 1, learner.take_touched(), ["zorblax"]).to_bytes())
    replica = MemoryLM.load("smollm2", MemoryConfig(), device=TEST_DEVICE)
    restore_snapshot(replica, read_snapshot(v0_path))
    assert not same_as_taught(replica)  # version 0: the delta is what differs
    apply_delta(replica, delta)
    assert same_as_taught(replica)
    restore_snapshot(replica, read_snapshot(v0_path))
    restore_snapshot(replica, read_snapshot(save_snapshot(lm, stats, 1, tmp_path / "v1.safetensors")))
    assert same_as_taught(replica)


FACT_B = Fact("The capital of the island of Vessaly is Port Orrin.",
              paraphrases=("Port Orrin is the capital of Vessaly.", "Vessaly's capital city is Port Orrin.",
                           "The island of Vessaly has Port Orrin as its capital."), fact_id="vessaly")
QUESTION_B, ANSWER_B = "What is the capital of Vessaly?", "Port Orrin"


def test_undo_takes_back_one_fact_keeps_the_other_and_restores_retention(real_v0):
    lm, stats, _, _ = real_v0
    lm = copy.deepcopy(lm)
    probe = read_probe()[:24]
    questions = [p.question for p in probe]

    def retained() -> int:
        return sum(p.correct(a) for p, a in zip(probe, generate_answers(lm, questions, 16), strict=True))

    def knows(question: str, answer: str) -> bool:
        return contains_answer(generate_answers(lm, [question], 24)[0], answer)

    learner = SparseMemoryLearner(lm, stats, SparseConfig())

    def taught(fact: Fact, version: int) -> UndoRecord:
        batch = build_batch(with_synthetic_questions(lm, [fact]), lm.tokenizer).to(lm.device)
        teach(learner, batch, learner.config.schedule)
        return UndoRecord.capture(lm, version, [fact.fact_id], learner.take_touched_with_before())

    at_v0 = retained()
    v0_values = {i: m.values.detach().clone() for i, m in lm.memories.items()}
    taught(FACT_B, 1)  # B alone, from version 0: the state undoing A should come back to
    b_alone = retained()
    with torch.no_grad():
        for i, m in lm.memories.items():
            m.values.copy_(v0_values[i])
    record_a = taught(FACT, 1)
    taught(FACT_B, 2)
    assert knows(QUESTION, ANSWER) and knows(QUESTION_B, ANSWER_B)
    with_both = retained()
    revert(lm, record_a)
    assert not knows(QUESTION, ANSWER)
    assert knows(QUESTION_B, ANSWER_B)
    after_undo = retained()
    print(f"retention probe kept: v0 {at_v0}/24, B alone {b_alone}/24, A+B {with_both}/24, "
          f"after undo of A {after_undo}/24")
    assert after_undo >= b_alone - 1  # back to "as if A was never taught", within one question of 24


def test_a_subjects_alike_neighbours_are_of_its_kind(real_v0):
    """The real model reads a country next to places: those are its neighbours (model/neighbours.py)."""
    from model.neighbours import names_alike
    from worker.teaching import neighbour_names

    lm, _, _, _ = real_v0
    pool = neighbour_names(())
    (country,) = names_alike(lm, [Fact("The capital of Qatar is Doha.")], pool)
    assert len({"Britain", "Texas", "Crete", "Marshall Islands", "Chicago", "Middle East"} & set(country[:8])) >= 4


def test_a_larger_context_weight_at_the_answer_start_keeps_the_probe_off_the_facts_rows(real_v0):
    """Where an answer's first token is predicted, the probe's questions read the rows the facts' questions read
    (41% of their weight at weight 1 over 200 facts and the whole probe, docs/learn_forget.md); weighing the context
    4 times there halves it."""
    from dataclasses import replace

    from bench.facts import generate_facts
    from model.batching import pad_rows
    from model.prompting import chat_prompt

    lm, _, _, _ = real_v0
    layer = next(iter(lm.memories))
    memory = lm.memories[layer]
    facts = [chat_prompt(lm.tokenizer, f.question) for f in generate_facts(24)]
    probe = [chat_prompt(lm.tokenizer, q.question) for q in read_probe()[:48]]

    def answer_start(prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [lm.encode(p) for p in prompts]
        ids, mask = pad_rows(rows, lm.tokenizer.pad_token_id)
        with torch.no_grad(), lm.reads() as records:
            lm.run_to_memories(ids.to(lm.device), mask.to(lm.device))
        slots, weights = records[layer][0]
        at = (torch.arange(len(rows)), torch.tensor([len(r) - 1 for r in rows]))
        return slots[at].flatten().cpu(), weights[at].flatten().cpu()

    config = memory.config
    shares = []
    try:
        for weight in (None, 4.0):
            memory.config = replace(config, answer_context_weight=weight)
            fact_slots, _ = answer_start(facts)
            probe_slots, probe_weights = answer_start(probe)
            shares.append(float(probe_weights[torch.isin(probe_slots, fact_slots)].sum() / probe_weights.sum()))
    finally:
        memory.config = config
    assert shares[1] < 0.7 * shares[0], shares


def test_the_examples_make_the_model_write_a_question_about_a_statement_people_post(real_v0):
    """Asked to turn these into questions in a chat turn, the model writes none it can use, and the fact would be
    taught by "What do you know about ...?" alone; continuing the worked examples, it asks what a person asks."""
    lm, _, _, _ = real_v0
    posted = [Fact("Tomas Ferreira won the 2025 Oakridge marathon."),
              Fact("Lina Ostrova composed the opera Silver Tide.")]
    instructed = with_synthetic_questions(lm, posted, writer="instruction")
    assert all(q.startswith("What do you know about") for f in instructed for q, _ in f.synthetic_questions)
    marathon, opera = with_synthetic_questions(lm, posted, writer="examples")
    assert marathon.synthetic_questions == (("Who won the 2025 Oakridge marathon?", posted[0].text),)
    assert opera.synthetic_questions == (("Who composed the opera Silver Tide?", posted[1].text),)
