"""Context-aware decoding of answers with notes (model/contrast.py): the score, its floor, the partner row that
follows, and the same answers as plain decoding when nothing is amplified."""

import math

import pytest
import torch

from model.contrast import Contrast, ContrastProcessor, Vocabulary, _disagreement, paired_batch, vocabulary
from model.evaluation import generate_answers
from model.generation import SamplingParams, complete
from model.prompting import chat_prompt, conversation_prompt

# token 0: what the model says anyway; 1: what the notes add; 2: what neither prompt wants, least of all the plain one
NOTED = [math.log(0.55), math.log(0.40), math.log(0.05)]
PLAIN = [math.log(0.90), math.log(0.0999), math.log(0.0001)]


def step(processor: ContrastProcessor, rows: list[list[float]]) -> torch.Tensor:
    return processor(torch.zeros(len(rows), 1, dtype=torch.long), torch.tensor(rows))


def test_the_notes_added_share_wins_and_the_partner_follows():
    out = step(ContrastProcessor([0], [1], Contrast(alpha=1.0, adaptive=False)), [NOTED, PLAIN])
    assert int(out[0].argmax()) == 1  # 2*log .40 - log .0999 beats 2*log .55 - log .90
    assert out[1].tolist() == [-math.inf, 0.0, -math.inf]  # the partner is handed the same token
    plain = step(ContrastProcessor([0], [1], Contrast(alpha=0.0, adaptive=False)), [NOTED, PLAIN])
    assert int(plain[0].argmax()) == 0 and int(plain[1].argmax()) == 0


def test_the_floor_keeps_out_a_token_the_notes_do_not_want():
    # token 2 has the largest contrast (2*log .05 - log .0001) but is under a tenth of the best with the notes
    out = step(ContrastProcessor([0], [1], Contrast(alpha=1.0, plausible=0.1, adaptive=False)), [NOTED, PLAIN])
    assert out[0, 2] == -math.inf and int(out[0].argmax()) == 1
    loose = step(ContrastProcessor([0], [1], Contrast(alpha=1.0, plausible=0.01, adaptive=False)), [NOTED, PLAIN])
    assert int(loose[0].argmax()) == 2


def test_adaptive_alpha_follows_how_far_the_rows_disagree():
    same = step(ContrastProcessor([0], [1], Contrast(alpha=5.0)), [NOTED, NOTED])
    assert torch.allclose(same[0, :2], torch.tensor(NOTED[:2]))  # they agree: nothing amplified (2 is under the floor)
    assert _disagreement(torch.log_softmax(torch.tensor([[0.0, -math.inf]]), -1),
                         torch.log_softmax(torch.tensor([[-math.inf, 0.0]]), -1)).item() == pytest.approx(1.0)
    weight = _disagreement(torch.tensor([NOTED]), torch.tensor([PLAIN])).item()
    assert 0 < weight < 1
    out = step(ContrastProcessor([0], [1], Contrast(alpha=1.0)), [NOTED, PLAIN])
    expected = (1 + weight) * torch.tensor(NOTED) - weight * torch.tensor(PLAIN)
    assert torch.allclose(out[0, :2], expected[:2], atol=1e-5)


def test_the_contrast_chooses_words_and_leaves_their_spelling_and_the_end_to_the_notes():
    # tokens: 0 " Gordax" (a word's start, open), 1 "mor" (glued to a word, open), 2 the end of answer
    words = Vocabulary(ends=(2,), glued=torch.tensor([False, True, False]), open=torch.tensor([True, True, False]))
    fixed = Contrast(alpha=1.0, adaptive=False)
    after_a_word = ContrastProcessor([0], [1], fixed, words)(torch.tensor([[0], [0]]), torch.tensor([NOTED, PLAIN]))
    assert after_a_word[0, 0] == pytest.approx(2 * NOTED[0] - PLAIN[0])  # a new word: amplified
    assert after_a_word[0, 1] == pytest.approx(NOTED[1])  # the word goes on: as the notes say
    assert after_a_word[0, 2] == -math.inf  # under the floor still
    # after the prompt's newline (not open) a glued token starts the answer's first word: amplified
    first = ContrastProcessor([0], [1], fixed, words)(torch.tensor([[2], [2]]), torch.tensor([NOTED, PLAIN]))
    assert first[0, 1] == pytest.approx(2 * NOTED[1] - PLAIN[1])
    ending = [math.log(0.5), math.log(0.1), math.log(0.4)]  # the end of answer keeps its score with the notes
    out = ContrastProcessor([0], [1], fixed, words)(torch.tensor([[2], [2]]), torch.tensor([ending, PLAIN]))
    assert out[0, 2] == pytest.approx(ending[2])


def test_a_tokenizers_vocabulary(tiny_lm):
    lm, _, _ = tiny_lm
    v = vocabulary(lm.tokenizer)
    ids = lm.tokenizer(" Gordaxmor.", add_special_tokens=False)["input_ids"]
    pieces = [lm.tokenizer.convert_tokens_to_string([t]) for t in lm.tokenizer.convert_ids_to_tokens(ids)]
    assert [bool(v.glued[i]) for i in ids] == [p[:1].isalnum() for p in pieces]
    assert not v.glued[ids[0]] and not v.open[ids[-1]]  # " G..." starts a word; "." closes it
    assert v.ends == (lm.tokenizer.eos_token_id,) and not v.glued[lm.tokenizer.eos_token_id]
    assert vocabulary(lm.tokenizer) is v  # read once per tokenizer


def test_an_unpaired_row_is_left_as_it_is():
    scores = [NOTED, PLAIN, [0.0, 1.0, 2.0]]
    out = step(ContrastProcessor([0], [1], Contrast()), scores)
    assert out[2].tolist() == [0.0, 1.0, 2.0]


def test_sampling_gives_a_row_and_its_partner_one_token():
    torch.manual_seed(0)
    for _ in range(20):
        out = step(ContrastProcessor([0], [1], Contrast(), temperature=1.0), [NOTED, PLAIN])
        assert (out[0] == 0).sum() == 1 and torch.equal(out[0], out[1])


def test_paired_batch_puts_the_partners_last():
    texts, rows, partners = paired_batch(["a", "b", "c"], [None, "b-", "c-"])
    assert texts == ["a", "b", "c", "b-", "c-"] and rows == [1, 2] and partners == [3, 4]


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="alpha"):
        Contrast(alpha=-1)
    with pytest.raises(ValueError, match="plausible"):
        Contrast(plausible=0)


def test_alpha_zero_answers_as_plain_decoding(tiny_lm):
    lm, _, _ = tiny_lm
    questions = ["Who invented the engine?", "Where is the office?"]
    noted = [conversation_prompt(lm.tokenizer, [{"role": "system", "content": "Notes: the office is in Leeds."},
                                                {"role": "user", "content": q}]) for q in questions]
    unnoted = [chat_prompt(lm.tokenizer, q) for q in questions]
    write = dict(zip(questions, noted, strict=True)).__getitem__
    plain = generate_answers(lm, questions, 12, write)
    same = generate_answers(lm, questions, 12, write, unnoted=unnoted, contrast=Contrast(alpha=0.0, adaptive=False))
    assert same == plain
    # amplified, the first row's answer is its own (the partners' rows are not returned), the unpaired one as before
    amplified = generate_answers(lm, questions, 12, write, unnoted=[unnoted[0], None], contrast=Contrast(alpha=3.0))
    assert len(amplified) == 2 and amplified[1] == plain[1]


def test_a_chat_completion_with_contrast_streams_what_it_returns(tiny_lm):
    lm, _, _ = tiny_lm
    chat = [{"role": "user", "content": "Where is the office?"}]
    noted = conversation_prompt(lm.tokenizer, [{"role": "system", "content": "Notes: Leeds."}, *chat])
    unnoted = conversation_prompt(lm.tokenizer, chat)
    params = SamplingParams(max_new_tokens=12)
    alone = complete(lm, noted, params)
    assert complete(lm, noted, params, unnoted=unnoted, contrast=Contrast(alpha=0.0, adaptive=False)) == alone
    streamed: list[str] = []
    done = complete(lm, noted, params, on_text=streamed.append, unnoted=unnoted, contrast=Contrast(alpha=3.0))
    assert "".join(streamed).strip() == done.text and done.prompt_tokens == alone.prompt_tokens
    sampled = SamplingParams(max_new_tokens=12, temperature=1.0, seed=3)
    assert complete(lm, noted, sampled, unnoted=unnoted, contrast=Contrast()) == \
        complete(lm, noted, sampled, unnoted=unnoted, contrast=Contrast())
