"""A benchmark's memory table at each checkpoint, kept as the rows that changed since the one before.

A stream of a thousand facts takes longer than one machine stays up. The whole table is too large to
commit with the progress (2.4 GB at 1,048,576 rows in float32), but a hundred facts in the service's
batches change a few per cent of it (the first hundred: 36,757 rows, 42 MB in bfloat16). So every checkpoint writes a
delta (model/snapshot.py's MemoryDelta: the changed rows' new values in the table's own dtype, and the
rows each fact taught since the last checkpoint wrote) into a directory beside the progress file, and a
run resumed on this machine, or on another one the files were copied to, replays version 0 plus every
delta up to its last checkpoint and stands bit for bit where the stopped run stood.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from model.errors import SnapshotError
from model.lm import MemoryLM
from model.provenance import RowWriters, Writes
from model.snapshot import MemoryDelta, apply_delta, save_atomically

log = logging.getLogger(__name__)


class TableLog:
    """The deltas of one setting on one stream: `<directory>/<facts>.safetensors`, one per checkpoint, each
    naming the stream it was trained on and the checkpoint it follows."""

    def __init__(self, directory: Path, stream: str) -> None:
        self.directory, self.stream = Path(directory), stream
        self._previous: dict[int, torch.Tensor] = {}
        self._after = 0

    def path(self, facts: int) -> Path:
        return self.directory / f"{facts:06d}.safetensors"

    def start(self, lm: MemoryLM, after: int = 0) -> None:
        """Diff the next checkpoint against the table as it stands now, after `after` facts."""
        self._previous = {i: m.values.detach().clone() for i, m in lm.memories.items()}
        self._after = after

    def clear(self) -> None:
        """Drop every delta written before: the run starts over."""
        for path in self.directory.glob("*.safetensors"):
            path.unlink()

    @torch.no_grad()
    def write(self, lm: MemoryLM, facts: int, writes: Writes) -> Path:
        """The rows changed since the last checkpoint (or `start`), after `facts` facts, and who wrote which."""
        rows = {}
        for i, memory in lm.memories.items():
            ids = (memory.values != self._previous[i]).any(dim=1).nonzero().flatten()
            rows[i] = (ids.cpu(), memory.values[ids].cpu().clone())
            self._previous[i][ids] = memory.values[ids]
        delta = MemoryDelta(facts, rows, tuple(writes), {f: dict(layers) for f, layers in writes.items()})
        tensors, meta = delta.to_tensors()
        path = save_atomically(tensors, self.path(facts), {**meta, "stream": self.stream, "after": str(self._after)})
        self._after = facts
        return path

    @torch.no_grad()
    def replay(self, lm: MemoryLM, checkpoints: Sequence[int]) -> tuple[int, RowWriters]:
        """Apply the deltas of `checkpoints` (facts taught at each, in order) to `lm`, standing at version 0,
        as far as they chain: returns the facts taught at the last one applied (0: none) and who wrote which
        row. A missing delta, or one from another stream or another chain, ends the replay there."""
        writers, after = RowWriters(), 0
        for facts in checkpoints:
            writes = self.apply(lm, facts, after)
            if writes is None:
                break
            writers.update(writes)
            after = facts
        return after, writers

    @torch.no_grad()
    def apply(self, lm: MemoryLM, facts: int, after: int) -> Writes | None:
        """Apply the delta of the checkpoint after `facts` facts to `lm`, standing at the one after `after`;
        returns who wrote which row, or None where there is no such delta (missing, unreadable, or from
        another stream or chain)."""
        path = self.path(facts)
        if not path.exists():
            return None
        data = path.read_bytes()
        try:
            meta = MemoryDelta.metadata_of(data)
            delta = MemoryDelta.from_bytes(data)
        except Exception as exc:  # a damaged file (written atomically, so not by an interrupted run)
            log.warning("%s: unreadable (%s); replay ends there", path, exc)
            return None
        if meta.get("stream") != self.stream or meta.get("after") != str(after):
            log.warning("%s: not the delta after %d facts of this stream; replay ends there", path, after)
            return None
        try:
            apply_delta(lm, delta)
        except SnapshotError as exc:  # another memory shape: the setting's label should have told it apart
            raise SnapshotError(f"{path}: {exc}") from exc
        return delta.writes
