"""A MemoryLM kept at the newest published version: the newest snapshot, then every later delta.

The worker uses it to resume where the last leader stopped; every API replica uses it to serve.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from model.errors import SnapshotError
from model.lm import MemoryLM
from model.snapshot import MemoryDelta, apply_delta, read_snapshot, restore_snapshot, save_snapshot
from model.statistics import SlotStats
from worker.errors import NotReadyError
from worker.store import RedisStore

log = logging.getLogger(__name__)
KEEP_SNAPSHOTS = 2


def version_path(directory: Path, version: int) -> Path:
    """The file of one version in a directory: its snapshot, or its undo record."""
    return directory / f"v{version:08d}.safetensors"


def keep_newest(directory: Path, count: int) -> None:
    """Delete all but the newest `count` version files (names sort by version)."""
    for old in sorted(directory.glob("v*.safetensors"))[:-count]:
        old.unlink(missing_ok=True)


def write_snapshot(lm: MemoryLM, stats: SlotStats, version: int, directory: Path) -> Path:
    """Save atomically and keep only the newest few snapshot files."""
    path = save_snapshot(lm, stats, version, version_path(directory, version))
    keep_newest(directory, KEEP_SNAPSHOTS)
    return path


class MemoryReplica:
    def __init__(self, model_spec: str, device: str, snapshot_dir: Path, store: RedisStore) -> None:
        self.model_spec, self.device, self.snapshot_dir, self.store = model_spec, device, snapshot_dir, store
        self.lm: MemoryLM | None = None
        self.stats: SlotStats | None = None
        self.version = -1
        self.lock = threading.RLock()  # held while the memory changes and while answering from it

    def load_snapshot(self) -> None:
        """Load the newest published snapshot (building the model on first use)."""
        snap_version = self.store.snapshot_version()
        if snap_version is None:
            raise NotReadyError("no snapshot published yet")
        snap = read_snapshot(version_path(self.snapshot_dir, snap_version))
        if snap.version != snap_version:  # a file renamed or copied by hand: its deltas would not fit
            raise SnapshotError(f"{version_path(self.snapshot_dir, snap_version)} holds version {snap.version}, "
                                f"but Redis says the snapshot is version {snap_version}")
        with self.lock:
            if self.lm is None:
                self.lm = MemoryLM.load(self.model_spec, snap.config, self.device)
            restore_snapshot(self.lm, snap)
            self.stats, self.version = snap.stats, snap.version
        log.info("loaded snapshot v%d", snap.version)

    def catch_up(self) -> int:
        """Apply every published delta after the current version; returns how many were applied."""
        if self.lm is None:
            self.load_snapshot()
        applied = 0
        while True:
            entries = self.store.deltas_after(self.version, count=64)
            if not entries:
                return applied
            for version, data in entries:
                if not self.apply(version, data):
                    break
                applied += 1

    def apply(self, version: int, data: bytes) -> bool:
        """Apply one delta in order. On a gap (trimmed history), reload the snapshot instead."""
        if version <= self.version:
            return True
        if version != self.version + 1:
            log.warning("delta v%d after v%d: gap, reloading the snapshot", version, self.version)
            self.load_snapshot()
            return False
        delta = MemoryDelta.from_bytes(data)
        assert self.lm is not None
        with self.lock:
            apply_delta(self.lm, delta)
            self.version = version
        return True
