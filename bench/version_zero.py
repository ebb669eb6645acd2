"""The version-0 model every benchmark starts from: a saved snapshot, or prepared now as the worker would."""

from __future__ import annotations

from pathlib import Path

from model.config import MemoryConfig
from model.corpus import load_corpus
from model.lm import MemoryLM
from model.prepare import prepare_version_zero
from model.snapshot import load_snapshot
from model.statistics import SlotStats


def version_zero(model: str, device: str, snapshot: Path | None = None,
                 memory: MemoryConfig | None = None) -> tuple[MemoryLM, SlotStats]:
    """From `snapshot` when given (its memory shape wins), else `model` with `memory` prepared on the
    shipped background corpus."""
    if snapshot is not None:
        return load_snapshot(model, snapshot, device)
    lm = MemoryLM.load(model, memory, device)
    stats, _ = prepare_version_zero(lm, load_corpus())
    return lm, stats
