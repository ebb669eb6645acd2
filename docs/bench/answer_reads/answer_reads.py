"""Where a question's answer begins, which rows does it read? A one-off measurement (session 22), kept to rerun:

    .venv/bin/python docs/bench/answer_reads/answer_reads.py runs/usage_s19_bare/v0.safetensors

At the last prompt position of a chat question (the one that predicts the answer's first token) it records the
slots the memory reads and their weights, for three sets of questions: questions built from the background
corpus' own sentences (four template forms about each sentence's subject), the first 200 generated facts'
questions, and the retention probe's (used here to measure, never to choose rows). It prints how much of the
probe's and of the facts' read weight falls on rows the background questions read, and then, for context
weights 0.5 to 32 (version 0's centring and IDF kept), how much of the probe's falls on rows the facts read.
"""

import dataclasses
import random
import re
import sys
from pathlib import Path

import torch

from bench.facts import generate_facts
from model.batching import pad_rows
from model.corpus import load_corpus
from model.probe import read_probe
from model.prompting import chat_prompt
from model.questions import subject_of
from model.snapshot import load_snapshot

FORMS = ("What do you know about {}?", "What is {}?", "Who or what is {}?", "Tell me about {}.")


@torch.no_grad()
def answer_start_reads(lm, prompts, layer, batch_size=16):
    """Per prompt: (slots, weights) read at its last position, all heads."""
    out = []
    for start in range(0, len(prompts), batch_size):
        rows = [lm.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts[start:start + batch_size]]
        ids, mask = pad_rows(rows, lm.tokenizer.pad_token_id)
        with lm.reads() as records:
            lm.run_to_memories(ids, mask)
        slots, weights = records[layer][0]
        last = mask.sum(1) - 1
        out += [(slots[b, last[b]].flatten(), weights[b, last[b]].flatten()) for b in range(len(rows))]
    return out


def doc_freq(reads, num_slots):
    counts = torch.zeros(num_slots, dtype=torch.long)
    for slots, _ in reads:
        counts[slots.unique()] += 1
    return counts


def weight_on(reads, rows):
    """Share of the read weight that falls on `rows` ([num_slots] bool)."""
    return sum(float(w[rows[s]].sum()) for s, w in reads) / sum(float(w.sum()) for _, w in reads)


def main(snapshot: str) -> None:
    torch.set_num_threads(2)
    lm, _ = load_snapshot("smollm2", Path(snapshot))
    layer = next(iter(lm.memories))
    memory, n = lm.memories[layer], lm.memories[layer].num_slots
    tok = lm.tokenizer
    sentences = [s for d in load_corpus(None).train for s in re.split(r"(?<=[.!?])\s+", d.text)
                 if 6 <= len(s.split()) <= 30]
    random.Random(0).shuffle(sentences)
    background = [chat_prompt(tok, FORMS[i % len(FORMS)].format(subject))
                  for i, s in enumerate(sentences) if (subject := subject_of(s))]
    facts = [chat_prompt(tok, f.question) for f in generate_facts(200, seed=0)]
    probe = [chat_prompt(tok, q.question) for q in read_probe()]
    reads = {name: answer_start_reads(lm, prompts, layer)
             for name, prompts in (("background", background), ("facts", facts), ("probe", probe))}
    df = {name: doc_freq(r, n) for name, r in reads.items()}
    print(f"questions: background {len(background)}, facts {len(facts)}, probe {len(probe)}\n")
    print("| rows read at the answer start by | rows | probe's read weight on them | facts' read weight on them |")
    print("| --- | --- | --- | --- |")
    for name in ("background", "facts"):
        for at_least in (1, 2, 5, 10):
            rows = df[name] >= at_least
            print(f"| {at_least}+ {name} questions | {int(rows.sum()):,} | {weight_on(reads['probe'], rows):.1%} "
                  f"| {weight_on(reads['facts'], rows):.1%} |")
    print("\n| context weight | rows the facts read | probe's weight on them | on rows 2+ facts read "
          "| facts' weight on rows another fact reads |")
    print("| --- | --- | --- | --- | --- |")
    config = memory.config
    for weight in (0.5, 1.0, 2.0, 4.0, 8.0, 32.0):
        memory.config = dataclasses.replace(config, context_weight=weight)
        fact_reads, probe_reads = answer_start_reads(lm, facts, layer), answer_start_reads(lm, probe, layer)
        counts = doc_freq(fact_reads, n)
        print(f"| {weight:g} | {int((counts > 0).sum()):,} | {weight_on(probe_reads, counts >= 1):.1%} "
              f"| {weight_on(probe_reads, counts >= 2):.1%} | {weight_on(fact_reads, counts >= 2):.1%} |")
    memory.config = config


if __name__ == "__main__":
    main(sys.argv[1])
