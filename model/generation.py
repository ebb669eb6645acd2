"""Chat completion for serving: one conversation, greedy or sampled, optionally streamed.

Text is streamed as the tokenizer finalises it (whole words), and held back while it could be
the start of a stop string, so a client never sees a stop string or part of one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList, TextStreamer

from model.contrast import Contrast, ContrastProcessor, vocabulary
from model.evaluation import left_padded
from model.lm import MemoryLM


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0: greedy, the same answer every time
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (end of answer or a stop string) or "length"
    set_aside: bool = False  # the answer with notes took nothing from them: made again without them


class StopFilter:
    """Passes text through, cutting at the first stop string and holding back a possible start of one."""

    def __init__(self, stop: Sequence[str]) -> None:
        self.stop = [s for s in stop if s]
        self.pending = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        if self.stopped:
            return ""
        self.pending += text
        cuts = [i for i in (self.pending.find(s) for s in self.stop) if i >= 0]
        if cuts:
            out, self.pending, self.stopped = self.pending[:min(cuts)], "", True
            return out
        hold = max((k for s in self.stop for k in range(1, len(s)) if self.pending.endswith(s[:k])), default=0)
        out = self.pending[:len(self.pending) - hold]
        self.pending = self.pending[len(out):]
        return out

    def flush(self) -> str:
        out, self.pending = ("" if self.stopped else self.pending), ""
        return out


class _Streamer(TextStreamer):
    """Streams the first row of the batch: the answer (a second row is its partner without notes, model/contrast.py)."""

    def __init__(self, tokenizer, on_text: Callable[[str], None], stop: StopFilter) -> None:
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.on_text, self.filter = on_text, stop

    def put(self, value: torch.Tensor) -> None:
        super().put(value[:1])  # the prompt as [rows, tokens], then each step's tokens as [rows]

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        out = self.filter.feed(text) + (self.filter.flush() if stream_end else "")
        if out:
            self.on_text(out)


class _Until(StoppingCriteria):
    """Ends generation when the client went away or a stop string was produced."""

    def __init__(self, cancelled: threading.Event | None, stop: StopFilter) -> None:
        self.cancelled, self.stop = cancelled, stop

    def __call__(self, input_ids, scores, **kwargs) -> torch.Tensor:
        done = self.stop.stopped or (self.cancelled is not None and self.cancelled.is_set())
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


def complete(lm: MemoryLM, prompt: str, params: SamplingParams, on_text: Callable[[str], None] | None = None,
             cancelled: threading.Event | None = None, unnoted: str | None = None,
             contrast: Contrast | None = None, use_memory: bool = True,
             grounded: Callable[[str], bool] | None = None, plain: str | None = None) -> Completion:
    """Continue `prompt` (already in the chat template); `on_text` receives the text as it is made. With
    `contrast` and `unnoted` (the prompt without its notes), decoded against version 0 given `unnoted`
    (model/contrast.py); `use_memory` False: answered as version 0 (the memory read adds nothing).
    With `grounded` and `plain` (the chat as asked, without notes): an answer `grounded` rejects (it took
    nothing from its notes, model/notes.py) is made again from `plain`; its text is held back until its whole
    words are seen to take from the notes, so a client never sees the answer that was set aside."""
    if grounded is None or plain is None:
        return _complete(lm, prompt, params, on_text, cancelled, unnoted, contrast, use_memory)
    held: list[str] = []
    passing = False

    def hold(text: str) -> None:
        nonlocal passing
        if not passing:
            held.append(text)
            said = "".join(held)
            whole = said if not said or said[-1].isspace() else said[:max(said.rfind(" "), 0)]
            if not grounded(whole):
                return
            passing, text = True, said
        if on_text is not None:
            on_text(text)

    done = _complete(lm, prompt, params, hold, cancelled, unnoted, contrast, use_memory)
    if grounded(done.text) or (cancelled is not None and cancelled.is_set()):
        if not passing and held and on_text is not None:
            on_text("".join(held))
        return done
    return replace(_complete(lm, plain, params, on_text, cancelled, use_memory=use_memory), set_aside=True)


@torch.no_grad()
def _complete(lm: MemoryLM, prompt: str, params: SamplingParams, on_text: Callable[[str], None] | None = None,
              cancelled: threading.Event | None = None, unnoted: str | None = None,
              contrast: Contrast | None = None, use_memory: bool = True) -> Completion:
    tok = lm.tokenizer
    pieces: list[str] = []

    def collect(text: str) -> None:
        pieces.append(text)
        if on_text is not None:
            on_text(text)

    stop = StopFilter(params.stop)
    sampled = params.temperature > 0
    if sampled and params.seed is not None:
        torch.manual_seed(params.seed)
    contrasted = contrast is not None and unnoted is not None
    ids, mask = left_padded(lm, [prompt, unnoted] if contrasted else [prompt])
    processors = LogitsProcessorList()
    if contrasted:  # it samples itself, so that both rows take the same token: generate runs greedy
        processors.append(ContrastProcessor([0], [1], contrast, vocabulary(tok), params.temperature, params.top_p))
        sampled = False
    with lm.without_memory([not use_memory, *([True] if contrasted else [])]):  # a partner is version 0
        out = lm.model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=params.max_new_tokens,
            do_sample=sampled, temperature=params.temperature if sampled else None,
            top_p=params.top_p if sampled else None, top_k=None, logits_processor=processors,
            pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
            streamer=_Streamer(tok, collect, stop), stopping_criteria=StoppingCriteriaList([_Until(cancelled, stop)]),
        )
    new = out[0, ids.shape[1]:]
    ended = len(new) < params.max_new_tokens or (len(new) and int(new[-1]) == tok.eos_token_id)
    finish = "stop" if stop.stopped or ended else "length"
    prompt_tokens = int(mask[0].sum())
    return Completion("".join(pieces).strip(), prompt_tokens, len(new), finish)
