"""Answer generation and the scores for learning and forgetting: contains, token F1, NLL."""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence

import torch

from model.batching import pad_rows
from model.lm import MemoryLM
from model.prompting import chat_prompt

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD-style normalisation: lower case, no punctuation, no articles, single spaces."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split())


def contains_answer(prediction: str, gold: str) -> bool:
    gold_n = normalize_answer(gold)
    return bool(gold_n) and f" {gold_n} " in f" {normalize_answer(prediction)} "


def token_f1(prediction: str, gold: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


GENERATION_BATCH = 320  # questions per generation: the 310-question retention probe is still one batch


def left_padded(lm: MemoryLM, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask, padded on the left so generation continues every row."""
    return left_padded_ids(lm.tokenizer, texts, lm.device)


def left_padded_ids(tokenizer, texts: Sequence[str], device: torch.device | str = "cpu"
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """`left_padded` for a tokenizer without its MemoryLM (the plain base model)."""
    rows = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    ids, mask = pad_rows(rows, tokenizer.pad_token_id, left=True)
    return ids.to(device), mask.to(device)


@torch.no_grad()
def generate_answer_ids(lm: MemoryLM, questions: Sequence[str], max_new_tokens: int | Sequence[int] = 32,
                        prompt: Callable[[str], str] | None = None, use_memory: Sequence[bool] | None = None
                        ) -> list[list[int]]:
    """Greedy answers as token ids, all questions in one batched generation; each row stops at its own
    token limit (padding after an early end of answer is left in; decoding skips it). `prompt` writes the
    text before each answer (default: the question alone in the chat template, as queries are asked);
    `use_memory` says per question whether its answer reads the memory (default: all do)."""
    if not questions:
        return []
    limits = [max_new_tokens] * len(questions) if isinstance(max_new_tokens, int) else list(max_new_tokens)
    if len(questions) > GENERATION_BATCH:  # the KV cache grows with the batch: a thousand answers at once is GBs
        return [row for start in range(0, len(questions), GENERATION_BATCH)
                for row in generate_answer_ids(lm, questions[start:start + GENERATION_BATCH],
                                               limits[start:start + GENERATION_BATCH], prompt,
                                               use_memory and use_memory[start:start + GENERATION_BATCH])]
    write = prompt or (lambda question: chat_prompt(lm.tokenizer, question))
    ids, mask = left_padded(lm, [write(q) for q in questions])
    with lm.without_memory(use_memory and [not used for used in use_memory]):
        out = lm.model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=max(limits), do_sample=False,
            pad_token_id=lm.tokenizer.pad_token_id, eos_token_id=lm.tokenizer.eos_token_id,
        )
    new = out[:, ids.shape[1]:]
    return [row[:limit].tolist() for row, limit in zip(new, limits, strict=True)]


def generate_answers(lm: MemoryLM, questions: Sequence[str], max_new_tokens: int | Sequence[int] = 32,
                     prompt: Callable[[str], str] | None = None, use_memory: Sequence[bool] | None = None
                     ) -> list[str]:
    """Greedy answers, all questions in one batched generation; each row stops at its own token limit."""
    return [lm.tokenizer.decode(row, skip_special_tokens=True).strip()
            for row in generate_answer_ids(lm, questions, max_new_tokens, prompt, use_memory)]


@torch.no_grad()
def mean_nll(lm: MemoryLM, texts: Sequence[str], max_tokens: int = 256, batch_size: int = 8) -> float:
    """Mean negative log-likelihood per predicted token over `texts`."""
    total, count = 0.0, 0
    for start in range(0, len(texts), batch_size):
        rows = [lm.encode(t)[:max_tokens] for t in texts[start:start + batch_size]]
        rows = [r for r in rows if len(r) >= 2]
        if not rows:
            continue
        ids, mask = (t.to(lm.device) for t in pad_rows(rows, lm.tokenizer.pad_token_id))
        logits = lm.logits(ids, mask)[:, :-1]
        targets, valid = ids[:, 1:], mask[:, 1:].bool()
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
        total += float(nll[valid].sum())
        count += int(valid.sum())
    return total / count if count else math.nan
