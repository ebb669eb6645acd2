"""Chat completion on the tiny model: stop strings, streaming equals the plain answer, limits."""

import threading

import pytest

from model.generation import SamplingParams, StopFilter, complete
from model.prompting import conversation_prompt


@pytest.mark.parametrize("pieces,stop,out", [
    (["Hello wor", "ld. Bye"], ["."], "Hello world"),
    (["ab", "c", "END", "x"], ["END"], "abc"),
    (["a", "E", "N", "x"], ["END"], "aENx"),  # a partial match that does not complete is let through
    (["no stops here"], [], "no stops here"),
])
def test_stop_filter_cuts_at_stop_strings_across_pieces(pieces, stop, out):
    f = StopFilter(stop)
    assert "".join(f.feed(p) for p in pieces) + f.flush() == out


def test_streamed_text_is_the_plain_completion(tiny_lm):
    lm, _, _ = tiny_lm
    prompt = conversation_prompt(lm.tokenizer, [{"role": "system", "content": "Be brief."},
                                                {"role": "user", "content": "Who invented the engine?"}])
    params = SamplingParams(max_new_tokens=12)
    plain = complete(lm, prompt, params)
    streamed: list[str] = []
    again = complete(lm, prompt, params, on_text=streamed.append)
    assert again == plain and "".join(streamed).strip() == plain.text
    assert plain.completion_tokens <= 12 and plain.prompt_tokens > 5
    assert plain.finish_reason in ("stop", "length")


def test_cancel_stops_generation_early(tiny_lm):
    lm, _, _ = tiny_lm
    cancelled = threading.Event()
    cancelled.set()
    done = complete(lm, "Once upon a time", SamplingParams(max_new_tokens=50), cancelled=cancelled)
    assert done.completion_tokens <= 1


def test_sampling_with_a_seed_is_reproducible(tiny_lm):
    lm, _, _ = tiny_lm
    params = SamplingParams(max_new_tokens=10, temperature=1.0, seed=7)
    assert complete(lm, "Once upon a time", params) == complete(lm, "Once upon a time", params)


def test_an_answer_that_takes_nothing_from_its_notes_is_made_again_without_them_and_never_streamed(tiny_lm):
    lm, _, _ = tiny_lm
    noted, plain = "The sea", "A document"  # the tiny model says "sea sea ..." to one, "ntnt..." to the other
    params = SamplingParams(max_new_tokens=12)
    with_notes, without = complete(lm, noted, params), complete(lm, plain, params)
    assert with_notes.text != without.text  # the tiny model's answers differ, so the test can tell them apart

    streamed: list[str] = []
    kept = complete(lm, noted, params, streamed.append, grounded=lambda answer: True, plain=plain)
    assert kept == with_notes and "".join(streamed).strip() == with_notes.text and not kept.set_aside

    streamed.clear()
    seen: list[str] = []

    def rejects(answer: str) -> bool:
        seen.append(answer)
        return False

    redone = complete(lm, noted, params, streamed.append, grounded=rejects, plain=plain)
    assert redone.text == without.text and redone.set_aside
    assert "".join(streamed).strip() == without.text  # the set-aside answer never reached the client
    assert seen[-1] == with_notes.text  # judged on the whole answer at the end

    streamed.clear()
    late = complete(lm, noted, params, streamed.append, grounded=lambda answer: answer.split().count("sea") > 2,
                    plain=plain)
    assert late == with_notes and "".join(streamed).strip() == with_notes.text  # held back, then all of it
    assert len(streamed) > 1  # and streamed from the third whole "sea" on
