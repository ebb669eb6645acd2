"""Context-keyed addressing: each memory also sees an IDF-weighted mean of the tokens read so far.

Where a fact's answer is predicted, the hidden state says mostly which sentence shape it is in
(`smft addressing`: "The capital of X is" reads the same slots whatever X is), so facts of one
kind overwrite each other and the questions of that kind. The rare tokens seen so far (the
subject's name) say which fact it is. Pooling token embeddings weighted by their background IDF,
with the prompt scaffolding weighted zero, gives a query that moves with the subject.

The pooling restarts where a user's turn opens (`<|im_start|>user\n` in SmolLM2's template): a
question is addressed by its own words, whatever system prompt or earlier turns come before it.
Prompts with one user turn and the default system prompt (whose tokens weigh nothing) pool exactly
as before, and so do plain statements, which have no turns.

Where the assistant's turn opens (the position that predicts an answer's first token) the hidden state
is the same template token for every question, so only the context tells questions apart there; a
memory's `answer_context_weight` weighs the context at that position alone (off by default).

The pooling runs in hooks on the decoder, so every caller (training, statistics, `generate`) gets
it. With a KV cache a forward sees only the new tokens: the running sums (since the last user turn
opened) ride on the cache object.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from model.memory import ProductKeyMemory

_SUMS = "_smft_context_sums"  # on a KV cache, per memory: (weighted embedding sum [B, H], weight sum [B])


def _cache_of(kwargs: dict) -> object | None:
    return kwargs["cache"] if "cache" in kwargs else kwargs.get("past_key_values")  # renamed in transformers 5


def _cached_tokens(cache: object | None) -> int:
    return int(cache.get_seq_length()) if cache is not None and hasattr(cache, "get_seq_length") else 0


def user_turn_opener(tokenizer) -> list[int]:
    """The token ids that open a user's turn in the chat template, from its last special token on
    (`<|im_start|>user\n`); empty without a template, or where the ids do not survive tokenizing a
    whole prompt (the pooling then spans the whole sequence)."""
    if not getattr(tokenizer, "chat_template", None):
        return []
    text = tokenizer.apply_chat_template([{"role": "user", "content": _MARKER}], tokenize=False)
    return _last_opener(tokenizer, text[:text.index(_MARKER)], text)


def assistant_turn_opener(tokenizer) -> list[int]:
    """The token ids that open the assistant's turn, as `user_turn_opener` finds a user's (`<|im_start|>assistant\n`):
    their last token is the position that predicts an answer's first token. Empty without a template."""
    if not getattr(tokenizer, "chat_template", None):
        return []
    text = tokenizer.apply_chat_template([{"role": "user", "content": _MARKER}], tokenize=False,
                                         add_generation_prompt=True)
    return _last_opener(tokenizer, text[text.index(_MARKER) + len(_MARKER):], text)


_MARKER = "Qmarker"


def _last_opener(tokenizer, text: str, whole: str) -> list[int]:
    """The ids of `text` from its last special token on, if they occur as such in the ids of `whole`."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    special = set(tokenizer.all_special_ids)
    opener = ids[max((i for i, t in enumerate(ids) if t in special), default=0):]
    whole_ids = tokenizer(whole, add_special_tokens=False)["input_ids"]
    found = any(whole_ids[i:i + len(opener)] == opener for i in range(len(whole_ids)))
    return opener if opener and found else []


def _turn_starts(ids: torch.Tensor, opener: torch.Tensor) -> torch.Tensor:
    """[B, T] True at the last token of every turn opener (`opener`) in `ids` [B, T]."""
    starts = torch.zeros_like(ids, dtype=torch.bool)
    n = opener.numel()
    if n == 0 or ids.shape[1] < n:
        return starts
    windows = ids.unfold(1, n, 1)  # [B, T - n + 1, n]
    starts[:, n - 1:] = (windows == opener).all(-1)
    return starts


class ContextPooler:
    """Feeds every context-addressed memory of a decoder the pooled context of each forward pass."""

    def __init__(self, decoder: nn.Module, memories: Sequence[ProductKeyMemory], opener: Sequence[int] = (),
                 answer_opener: Sequence[int] = ()) -> None:
        self.memories = list(memories)
        self.embed = decoder.get_input_embeddings()
        self.opener = torch.tensor(list(opener), dtype=torch.long)  # ids that open a user turn (user_turn_opener)
        # ids that open the assistant's turn (assistant_turn_opener): where a memory's answer_context_weight applies
        self.answer_opener = torch.tensor(list(answer_opener), dtype=torch.long)
        self._pinned: torch.Tensor | None = None  # token ids of a forward that passes inputs_embeds
        self._pending: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        # The hooks live as long as the decoder: a context-addressed memory cannot run without them.
        decoder.register_forward_pre_hook(self._before, with_kwargs=True)
        decoder.register_forward_hook(self._after, with_kwargs=True)

    @contextmanager
    def pinned(self, input_ids: torch.Tensor) -> Iterator[None]:
        """The token ids behind a forward that starts from hidden states (MemoryLM.loss_from_layer)."""
        self._pinned = input_ids
        try:
            yield
        finally:
            self._pinned = None

    @torch.no_grad()
    def _before(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            ids = self._pinned
        if ids is None:
            raise RuntimeError("a context-addressed memory needs the token ids of every forward pass")
        cache = _cache_of(kwargs)
        cached = _cached_tokens(cache)
        past = getattr(cache, _SUMS, None) if cached else None  # None: a fresh sequence
        if cached and past is None:
            raise RuntimeError("this KV cache was filled without the memory's context sums")
        mask = kwargs.get("attention_mask")
        embeds = self.embed(ids).float()  # [B, T, H] for the T new tokens
        # Where the newest user turn opened, per position: the sums restart there ([B, T], -1: not in this forward).
        # Skipped for a forward shorter than the opener: every generated token, the hot path.
        restart = restarted = None
        if 0 < self.opener.numel() <= ids.shape[1]:
            positions = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
            restart = torch.where(_turn_starts(ids, self.opener.to(ids.device)), positions, -1).cummax(1).values
            restarted = restart >= 0
        at_answer = None  # [B, T]: where an answer's first token is predicted; a generated token never is
        if 0 < self.answer_opener.numel() <= ids.shape[1] and any(
                m.config.answer_context_weight is not None for m in self.memories):
            at_answer = _turn_starts(ids, self.answer_opener.to(ids.device))
        sums = []
        for i, memory in enumerate(self.memories):
            weight = memory.token_weight[ids].float()  # [B, T]
            if isinstance(mask, torch.Tensor) and mask.dim() == 2:
                weight = weight * mask[:, -ids.shape[1]:].float()  # left padding weighs nothing
            total = (weight[..., None] * embeds).cumsum(1)  # [B, T, H]: weighted sum up to each position
            mass = weight.cumsum(1)  # [B, T]
            if past is not None:
                total, mass = total + past[i][0][:, None], mass + past[i][1][:, None]  # + [B, 1, H], [B, 1]
            if restarted is not None and restarted.any():  # only what came after the opener counts
                at = restart.clamp_min(0)
                total = total - torch.where(restarted[..., None], total.gather(1, at[..., None].expand_as(total)), 0)
                mass = mass - torch.where(restarted, mass.gather(1, at), 0)
            # The context's weight at each position: 0 before any weighted token, else the memory's context weight
            # (its answer_context_weight where an answer's first token is predicted).
            seen = mass > 0
            strength = seen.float() * memory.config.context_weight
            if at_answer is not None and memory.config.answer_context_weight is not None:
                strength = torch.where(at_answer & seen, memory.config.answer_context_weight, strength)
            pooled = total / mass.clamp_min(1e-9)[..., None]  # [B, T, H]
            memory.context = (pooled.to(memory.input_mean.dtype), strength.to(memory.input_mean.dtype))
            sums.append((total[:, -1], mass[:, -1]))  # [B, H], [B]: carried to the next forward
        if cache is not None:
            setattr(cache, _SUMS, sums)
        self._pending = sums

    def _after(self, module: nn.Module, args: tuple, kwargs: dict, output) -> None:
        # A cache the decoder made itself (use_cache without one passed in) gets the sums here.
        cache = output.cache if hasattr(output, "cache") else getattr(output, "past_key_values", None)
        if cache is not None and self._pending is not None:
            setattr(cache, _SUMS, self._pending)
        self._pending = None
        for memory in self.memories:
            memory.context = None


@torch.no_grad()
def fit_token_weights(memories: Sequence[ProductKeyMemory], docs: Sequence[Sequence[int]],
                      scaffolding: Sequence[int]) -> None:
    """Each token's weight = its IDF over the documents (token id lists); scaffolding tokens (chat
    template, special tokens), present in every prompt, weigh nothing."""
    vocab = memories[0].token_weight.shape[0]
    doc_freq = torch.zeros(vocab, dtype=torch.float64)
    for doc in docs:
        doc_freq[torch.tensor(sorted(set(doc)), dtype=torch.long)] += 1
    weight = torch.log((len(docs) + 1) / (doc_freq + 1))
    weight[torch.tensor(sorted(set(scaffolding)), dtype=torch.long)] = 0.0
    for memory in memories:
        memory.token_weight.copy_(weight.to(memory.token_weight.dtype))
