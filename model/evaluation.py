"""Answer generation and the scores for learning and forgetting: contains, token F1, NLL."""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence

import torch
from transformers import LogitsProcessorList

from model.batching import pad_rows
from model.contrast import Contrast, ContrastProcessor, paired_batch, vocabulary
from model.lm import MemoryLM
from model.prompting import chat_prompt

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_POSSESSIVE = re.compile(r"(?<=\w)['\u2019]s\b")  # "Bluefin's deadline" names Bluefin (SQuAD's rule made it "bluefins")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD-style normalisation: lower case, no possessive 's, no punctuation, no articles, single spaces."""
    return " ".join(_ARTICLES.sub(" ", _POSSESSIVE.sub("", text.lower()).translate(_PUNCT)).split())


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
                        prompt: Callable[[str], str] | None = None, use_memory: Sequence[bool] | None = None,
                        unnoted: Sequence[str | None] | None = None, contrast: Contrast | None = None,
                        stop: Sequence[str] = ()) -> list[list[int]]:
    """Greedy answers as token ids, all questions in one batched generation; each row stops at its own
    token limit (padding after an early end of answer is left in; decoding skips it). `prompt` writes the
    text before each answer (default: the question alone in the chat template, as queries are asked);
    `use_memory` says per question whether its answer reads the memory (default: all do); with `contrast`,
    a question whose `unnoted` text (its prompt without the notes) is given is decoded against it
    (model/contrast.py); a row ends early at the first of the `stop` strings it writes (kept in its ids)."""
    if not questions:
        return []
    limits = [max_new_tokens] * len(questions) if isinstance(max_new_tokens, int) else list(max_new_tokens)
    if len(questions) > GENERATION_BATCH:  # the KV cache grows with the batch: a thousand answers at once is GBs
        return [row for start in range(0, len(questions), GENERATION_BATCH)
                for row in generate_answer_ids(lm, questions[start:start + GENERATION_BATCH],
                                               limits[start:start + GENERATION_BATCH], prompt,
                                               use_memory and use_memory[start:start + GENERATION_BATCH],
                                               unnoted and unnoted[start:start + GENERATION_BATCH], contrast, stop)]
    write = prompt or (lambda question: chat_prompt(lm.tokenizer, question))
    texts, rows, partners = paired_batch([write(q) for q in questions],
                                         unnoted if contrast is not None and unnoted else [None] * len(questions))
    ids, mask = left_padded(lm, texts)
    muted = [*(not used for used in (use_memory or [True] * len(questions))), *(True for _ in rows)]
    processors = LogitsProcessorList(
        [ContrastProcessor(rows, partners, contrast, vocabulary(lm.tokenizer))] if rows else [])
    with lm.without_memory(muted):  # a partner reads no memory: it is version 0 without the notes
        out = lm.model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=max(limits), do_sample=False,
            pad_token_id=lm.tokenizer.pad_token_id, eos_token_id=lm.tokenizer.eos_token_id,
            logits_processor=processors, stop_strings=list(stop) or None, tokenizer=lm.tokenizer if stop else None,
        )
    new = out[:len(questions), ids.shape[1]:]
    return [row[:limit].tolist() for row, limit in zip(new, limits, strict=True)]


def generate_answers(lm: MemoryLM, questions: Sequence[str], max_new_tokens: int | Sequence[int] = 32,
                     prompt: Callable[[str], str] | None = None, use_memory: Sequence[bool] | None = None,
                     unnoted: Sequence[str | None] | None = None, contrast: Contrast | None = None,
                     stop: Sequence[str] = ()) -> list[str]:
    """Greedy answers, all questions in one batched generation; each row stops at its own token limit (or at
    a `stop` string, which the text keeps)."""
    return [lm.tokenizer.decode(row, skip_special_tokens=True).strip()
            for row in generate_answer_ids(lm, questions, max_new_tokens, prompt, use_memory, unnoted, contrast, stop)]


def again_without_notes(lm: MemoryLM, answers: Sequence[str], questions: Sequence[str],
                        grounded: Sequence[Callable[[str], bool] | None], max_new_tokens: int | Sequence[int] = 32,
                        use_memory: Sequence[bool] | None = None) -> list[str | None]:
    """For each answer made with notes that its `grounded` rejects (it took nothing from them, model/notes.py),
    the answer to its question asked without them, all in one batch; None where the answer stands."""
    limits = [max_new_tokens] * len(answers) if isinstance(max_new_tokens, int) else list(max_new_tokens)
    redo = [i for i, (answer, check) in enumerate(zip(answers, grounded, strict=True))
            if check is not None and not check(answer)]
    again = generate_answers(lm, [questions[i] for i in redo], [limits[i] for i in redo],
                             use_memory=use_memory and [use_memory[i] for i in redo])
    out: list[str | None] = [None] * len(answers)
    for i, answer in zip(redo, again, strict=True):
        out[i] = answer
    return out


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
