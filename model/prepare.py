"""Version 0: centre the memory inputs and collect slot statistics on the background corpus."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from model.context import fit_token_weights
from model.corpus import Corpus
from model.lm import MemoryLM
from model.prompting import chat_prompt, end_of_answer
from model.statistics import SlotStats, UsageReport, collect_slot_stats, fit_means_and_collect_stats, usage_report

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AddressingReport:
    uncentred: dict[int, UsageReport] | None  # raw hidden states into the query projection
    centred: dict[int, UsageReport]  # after subtracting the background mean (what version 0 uses)


def prepare_version_zero(lm: MemoryLM, corpus: Corpus, measure_uncentred: bool = False,
                         max_tokens: int = 128) -> tuple[SlotStats, AddressingReport]:
    """Fit input centring and background statistics in place; returns them with usage figures."""
    docs = corpus.rendered_train(lm.tokenizer)
    if lm.context is not None:
        tok = lm.tokenizer
        scaffolding = [*lm.encode(chat_prompt(tok, "")), *lm.encode(end_of_answer(tok)), *tok.all_special_ids]
        fit_token_weights(list(lm.memories.values()), [lm.encode(d)[:max_tokens] for d in docs], scaffolding)
    uncentred = None
    if measure_uncentred:
        for memory in lm.memories.values():
            memory.input_mean.zero_()
        raw = collect_slot_stats(lm, docs, corpus.fingerprint, max_tokens=max_tokens)
        uncentred = {i: usage_report(r) for i, r in raw.reads.items()}
    if lm.config.center_inputs:
        stats = fit_means_and_collect_stats(lm, docs, corpus.fingerprint, max_tokens=max_tokens)
    else:
        stats = collect_slot_stats(lm, docs, corpus.fingerprint, max_tokens=max_tokens)
    centred = {i: usage_report(r) for i, r in stats.reads.items()}
    for layer, report in centred.items():
        log.info("layer %d addressing: %s of slots read, top 1%% take %s, entropy %.3f", layer,
                 f"{report.fraction_read:.1%}", f"{report.top1pct_share:.1%}", report.entropy)
    return stats, AddressingReport(uncentred, centred)
