"""Context-keyed addressing (model/context.py) on the tiny model: exact at version 0, the same under a
KV cache as without, in the fast training path, in snapshots, and it moves the address with the subject."""

import copy
from dataclasses import replace

import pytest
import torch

from model.batching import pad_rows
from model.config import MemoryConfig, SparseConfig
from model.context import assistant_turn_opener, user_turn_opener
from model.corpus import split_corpus
from model.evaluation import generate_answers
from model.facts import Fact, build_batch
from model.learners import SparseMemoryLearner, lm_loss
from model.lm import MemoryLM
from model.loading import load_base_model
from model.memory import ProductKeyMemory
from model.prepare import prepare_version_zero
from model.prompting import chat_prompt, conversation_prompt
from model.snapshot import read_snapshot, restore_snapshot, save_snapshot
from tests.conftest import TEST_DEVICE, TINY_DOCS, TINY_MEMORY

CONTEXT_MEMORY = replace(TINY_MEMORY, context_weight=4.0)
PLAIN_MEMORY = replace(TINY_MEMORY, context_weight=0.0)  # the same keys and projection, no context query
FACT = Fact("Mira Quell invented the Zorblax engine.", question="Who invented the Zorblax engine?",
            answer="Mira Quell", fact_id="f1")


@pytest.fixture(scope="module")
def _context_v0(tiny_model_dir):
    lm = MemoryLM.load(str(tiny_model_dir), CONTEXT_MEMORY, device=TEST_DEVICE)
    stats, _ = prepare_version_zero(lm, split_corpus(TINY_DOCS, heldout_fraction=0.25))
    return lm, stats


@pytest.fixture(scope="module")
def plain_lm(tiny_model_dir) -> MemoryLM:
    lm = MemoryLM.load(str(tiny_model_dir), PLAIN_MEMORY, device=TEST_DEVICE)
    prepare_version_zero(lm, split_corpus(TINY_DOCS, heldout_fraction=0.25))
    return lm


@pytest.fixture
def context_lm(_context_v0):
    lm, stats = _context_v0
    return copy.deepcopy(lm), copy.deepcopy(stats)


def with_random_values(lm: MemoryLM) -> MemoryLM:
    torch.manual_seed(0)
    with torch.no_grad():
        for memory in lm.memories.values():
            memory.values.normal_()
    return lm


def test_config_rejects_a_negative_context_weight():
    with pytest.raises(ValueError, match="context_weight"):
        MemoryConfig(context_weight=-1.0)


def test_token_weights_are_background_idf_with_the_prompt_scaffolding_at_zero(context_lm):
    lm, _ = context_lm
    weight = lm.memories[1].token_weight
    for token in lm.encode(chat_prompt(lm.tokenizer, "")):
        assert weight[token] == 0
    common, = set(lm.encode(" the")) & set(lm.encode("the river flows to the sea"))
    rare = max(lm.encode("Zorblax"), key=lambda t: float(weight[t]))  # absent from the background
    assert 0 <= float(weight[common]) < float(weight[rare])
    assert float(weight[rare]) == pytest.approx(torch.log(torch.tensor(len(TINY_DOCS) * 0.75 + 1)).item())


def test_version_zero_is_exactly_the_base_model(context_lm, tiny_model_dir):
    lm, _ = context_lm
    base, _ = load_base_model(str(tiny_model_dir), TEST_DEVICE)
    ids = torch.tensor([lm.encode("The quick brown fox jumps over the Zorblax engine.")], device=lm.device)
    with torch.no_grad():
        assert torch.equal(base(input_ids=ids).logits, lm.logits(ids))


def test_cached_decoding_reads_what_a_full_forward_reads(context_lm):
    lm = with_random_values(context_lm[0])
    ids = torch.tensor([lm.encode("The quick brown fox jumps over the lazy dog and the river")], device=lm.device)
    full = lm.logits(ids)
    with torch.no_grad():
        out = lm.model(input_ids=ids[:, :5], use_cache=True)  # the decoder makes the cache itself
        steps = [out.logits]
        for t in range(5, ids.shape[1]):
            # transformers 5 renamed past_key_values to cache (model/context.py reads both)
            cache = {"cache": out.cache} if hasattr(out, "cache") else {"past_key_values": out.past_key_values}
            out = lm.model(input_ids=ids[:, t:t + 1], use_cache=True, **cache)
            steps.append(out.logits)
    assert torch.allclose(torch.cat(steps, 1), full, atol=1e-5)


def test_batched_generation_with_left_padding_matches_one_by_one_and_no_cache(context_lm):
    lm = with_random_values(context_lm[0])
    questions = ["Who invented the Zorblax engine?", "Where does the river flow?"]
    together = generate_answers(lm, questions, 8)
    assert together == [generate_answers(lm, [q], 8)[0] for q in questions]
    ids = torch.tensor([lm.encode(chat_prompt(lm.tokenizer, questions[0]))], device=lm.device)
    cached = lm.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=8,
                               do_sample=False, pad_token_id=lm.tokenizer.pad_token_id)
    uncached = lm.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=8,
                                 do_sample=False, use_cache=False, pad_token_id=lm.tokenizer.pad_token_id)
    assert torch.equal(cached, uncached)


def last_token_reads(lm: MemoryLM, texts: list[str]) -> list[set[int]]:
    rows = [lm.encode(t) for t in texts]
    ids, mask = pad_rows(rows, lm.tokenizer.pad_token_id)
    with lm.recording() as records:
        lm.run_to_memories(ids.to(lm.device), mask.to(lm.device))
    return [set(records[1][0][i, len(r) - 1].flatten().tolist()) for i, r in enumerate(rows)]


def test_the_subject_moves_the_address_of_the_same_final_words(context_lm, plain_lm):
    """The point of it: sentences that end alike read apart when their subjects differ. Both models
    have the same keys and query projection; only the context query tells them apart."""
    texts = [f"{subject} invented the engine in the morning" for subject in ("Zorblax", "Mira Quell", "Paris")]

    def mean_overlap(lm: MemoryLM) -> float:
        reads = last_token_reads(lm, texts)
        pairs = [(a, b) for i, a in enumerate(reads) for b in reads[i + 1:]]
        return sum(len(a & b) / len(a | b) for a, b in pairs) / len(pairs)

    with_context, without = mean_overlap(context_lm[0]), mean_overlap(plain_lm)
    assert with_context < 0.5 * without


@pytest.mark.parametrize("answer_weight", [None, 16.0])
def test_fast_training_path_is_exact_with_context(context_lm, answer_weight):
    lm, stats = context_lm
    for memory in lm.memories.values():  # the fast path pins the token ids: the answer start is found there too
        memory.config = replace(memory.config, answer_context_weight=answer_weight)
    learner = SparseMemoryLearner(lm, stats, SparseConfig(top_t=7, lr=0.5))
    batch = build_batch([FACT], lm.tokenizer).to(lm.device)
    first = learner.step(batch)
    assert learner._fast
    with torch.no_grad():
        assert abs(float(lm_loss(lm, batch)) - float(learner._loss(batch))) < 1e-5
    assert learner.step(batch).loss < first.loss


def test_snapshot_carries_the_token_weights(context_lm, tiny_model_dir, tmp_path):
    lm = with_random_values(context_lm[0])
    path = save_snapshot(lm, context_lm[1], 1, tmp_path / "s.safetensors")
    fresh = MemoryLM.load(str(tiny_model_dir), read_snapshot(path).config, device=TEST_DEVICE)
    restore_snapshot(fresh, read_snapshot(path))
    assert torch.equal(fresh.memories[1].token_weight, lm.memories[1].token_weight)
    ids = build_batch([FACT], lm.tokenizer).to(lm.device).input_ids
    assert torch.equal(fresh.logits(ids), lm.logits(ids))


def test_a_context_memory_outside_its_model_says_what_it_needs():
    memory = ProductKeyMemory(replace(TINY_MEMORY, context_weight=1.0), hidden_size=32, vocab_size=50)
    with pytest.raises(RuntimeError, match="context"):
        memory(torch.randn(1, 3, 32))
    with pytest.raises(ValueError, match="vocabulary"):
        ProductKeyMemory(replace(TINY_MEMORY, context_weight=1.0), hidden_size=32)


def test_the_worker_setting_reaches_the_memory_config(monkeypatch):
    from pydantic import ValidationError

    from worker.settings import WorkerSettings

    monkeypatch.setenv("SMFT_MEMORY_CONTEXT_WEIGHT", "4")
    assert WorkerSettings().memory_config().context_weight == 4.0
    assert WorkerSettings().memory_config().answer_context_weight is None
    monkeypatch.setenv("SMFT_MEMORY_ANSWER_CONTEXT_WEIGHT", "8")
    assert WorkerSettings().memory_config().answer_context_weight == 8.0
    monkeypatch.setenv("SMFT_MEMORY_ANSWER_CONTEXT_WEIGHT", "none")
    assert WorkerSettings().memory_config().answer_context_weight is None
    monkeypatch.setenv("SMFT_MEMORY_CONTEXT_WEIGHT", "-1")
    with pytest.raises(ValidationError, match="memory_context_weight"):
        WorkerSettings()


def test_the_user_turn_opener_comes_from_the_chat_template(context_lm):
    tokenizer = context_lm[0].tokenizer
    assert user_turn_opener(tokenizer) == tokenizer("<|im_start|>user\n", add_special_tokens=False)["input_ids"]
    assert context_lm[0].context.opener.tolist() == user_turn_opener(tokenizer)


def test_a_question_is_addressed_by_its_own_turn_whatever_comes_before_it(context_lm):
    """A system prompt or earlier turns (words the background never saw, so they weigh) must not move the
    context a question's tokens are read with; before, they were pooled in and diluted its subject."""
    lm = context_lm[0]
    question = "Who invented the Zorblax engine?"
    chats = [[{"role": "user", "content": question}],
             [{"role": "system", "content": "Answer about Paris and Mira Quell briefly."},
              {"role": "user", "content": question}],
             [{"role": "user", "content": "Where is Paris?"}, {"role": "assistant", "content": "Mira Quell knows."},
              {"role": "user", "content": question}]]
    pooled = []
    handle = lm.memories[1].register_forward_pre_hook(lambda m, args: pooled.append(m.context[0][0, -1].clone()))
    try:
        for chat in chats:
            lm.logits(torch.tensor([lm.encode(conversation_prompt(lm.tokenizer, chat))], device=lm.device))
    finally:
        handle.remove()
    assert torch.allclose(pooled[0], pooled[1], atol=1e-5) and torch.allclose(pooled[0], pooled[2], atol=1e-5)
    plain = lm.encode(chat_prompt(lm.tokenizer, question))
    assert lm.encode(conversation_prompt(lm.tokenizer, chats[0])) == plain  # the query path asks the same


def test_the_assistant_turn_opener_comes_from_the_chat_template(context_lm):
    tokenizer = context_lm[0].tokenizer
    assert assistant_turn_opener(tokenizer) == tokenizer("<|im_start|>assistant\n", add_special_tokens=False)[
        "input_ids"]
    assert context_lm[0].context.answer_opener.tolist() == assistant_turn_opener(tokenizer)


def with_answer_context_weight(lm: MemoryLM, weight: float | None) -> MemoryLM:
    """A copy of `lm` whose memories weigh the context so where an answer's first token is predicted."""
    lm = copy.deepcopy(lm)
    for memory in lm.memories.values():
        memory.config = replace(memory.config, answer_context_weight=weight)
    return lm


def test_the_answer_context_weight_moves_only_the_answer_start(context_lm):
    """It weighs the context at the position that predicts an answer's first token and nowhere else (that it parts
    questions there is the default model's property: tests/test_real_model.py)."""
    base = copy.deepcopy(context_lm[0])
    for memory in base.memories.values():
        memory.config = replace(memory.config, context_weight=1.0)
    boosted = with_answer_context_weight(base, 32.0)
    questions = ["Who invented the Zorblax engine?", "Who founded the city of Paris?", "Where does the river flow?"]
    prompts = [chat_prompt(base.tokenizer, q) for q in questions]

    def reads(lm: MemoryLM, text: str) -> torch.Tensor:
        with lm.recording() as records:
            lm.run_to_memories(torch.tensor([lm.encode(text)], device=lm.device))
        return records[1][0][0]  # [T, heads, k]

    for prompt in prompts:
        before, after = reads(base, prompt), reads(boosted, prompt)
        assert torch.equal(before[:-1], after[:-1])
        assert not torch.equal(before[-1], after[-1])


def test_cached_generation_matches_uncached_with_an_answer_context_weight(context_lm):
    lm = with_answer_context_weight(with_random_values(context_lm[0]), 8.0)
    ids = torch.tensor([lm.encode(chat_prompt(lm.tokenizer, "Who invented the Zorblax engine?"))], device=lm.device)
    kwargs = dict(attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False,
                  pad_token_id=lm.tokenizer.pad_token_id)
    assert torch.equal(lm.model.generate(input_ids=ids, **kwargs),
                       lm.model.generate(input_ids=ids, use_cache=False, **kwargs))


@pytest.mark.parametrize(("context", "answer", "message"), [(1.0, 0.0, "must be > 0"), (1.0, -2.0, "must be > 0"),
                                                            (0.0, 4.0, "needs context addressing")])
def test_config_rejects_an_answer_context_weight_it_cannot_use(context, answer, message):
    with pytest.raises(ValueError, match=message):
        MemoryConfig(context_weight=context, answer_context_weight=answer)
