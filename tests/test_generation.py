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
