"""A MemoryLM kept at the newest published version: the newest snapshot, then every later delta.

The worker uses it to resume where the last leader stopped; every API replica uses it to serve.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from pathlib import Path

from model.errors import SnapshotError
from model.lm import MemoryLM
from model.provenance import RowWriters
from model.snapshot import MemoryDelta, apply_delta, read_snapshot, restore_snapshot, save_snapshot
from model.statistics import SlotStats
from worker.errors import NotReadyError
from worker.store import RedisStore

log = logging.getLogger(__name__)


def version_path(directory: Path, version: int) -> Path:
    """A version's file as named before deployment ids (snapshots and undo records of such deployments)."""
    return directory / f"v{version:08d}.safetensors"


def deployment_dir(directory: Path, deployment: str) -> Path:
    """A deployment's own folder inside the snapshots or journal folder ('' : the folder itself, pre-id)."""
    return directory / deployment if deployment else directory


def new_version_file(directory: Path, version: int) -> Path:
    """A name for a version's file that no other writer can take (a deposed leader writing the same
    version); Redis names the one that counts. Names sort by version."""
    return directory / f"v{version:08d}-{uuid.uuid4().hex[:12]}.safetensors"


def version_of_file(path: Path) -> int | None:
    match = _VERSION_FILE.fullmatch(path.name)
    return int(match.group(1)) if match else None


_VERSION_FILE = re.compile(r"v(\d{8})(?:-[0-9a-f]+)?\.safetensors")


def remove_versions_before(directory: Path, version: int, keep: set[Path] = frozenset()) -> list[int]:
    """Delete the version files in `directory` older than `version` (but not those in `keep`); returns the
    versions removed."""
    removed = []
    for path in directory.glob("v*.safetensors"):
        found = version_of_file(path)
        if found is not None and found < version and path not in keep:
            path.unlink(missing_ok=True)
            removed.append(found)
    return sorted(set(removed))


def write_snapshot(lm: MemoryLM, stats: SlotStats, version: int, directory: Path,
                   writers: RowWriters | None = None, deployment: str = "") -> Path:
    """Save atomically under a name of its own in `directory`; the caller points Redis at it."""
    return save_snapshot(lm, stats, version, new_version_file(directory, version), writers, deployment)


class MemoryReplica:
    def __init__(self, model_spec: str, device: str, snapshot_dir: Path, store: RedisStore) -> None:
        self.model_spec, self.device, self.snapshot_dir, self.store = model_spec, device, snapshot_dir, store
        self.lm: MemoryLM | None = None
        self.stats: SlotStats | None = None
        self.writers = RowWriters()  # which live fact wrote which row: what `explain` reads
        self.version = -1
        self.deployment = ""  # the deployment whose memory this is (see worker/store.py)
        self.lock = threading.RLock()  # held while the memory changes and while answering from it

    def load_snapshot(self) -> None:
        """Load the newest published snapshot (building the model on first use)."""
        pointer = self.store.snapshot_pointer()
        if pointer is None:
            raise NotReadyError("no snapshot published yet")
        snap_version, file, deployment = pointer
        path = self.snapshot_dir / file if file else version_path(self.snapshot_dir, snap_version)
        snap = read_snapshot(path)
        if snap.version != snap_version:  # a file renamed or copied by hand: its deltas would not fit
            raise SnapshotError(f"{path} holds version {snap.version}, but Redis says the snapshot is version "
                                f"{snap_version}")
        if snap.deployment != deployment:
            raise SnapshotError(f"{path} belongs to deployment {snap.deployment or '(none)'}, but Redis serves "
                                f"deployment {deployment or '(none)'}")
        with self.lock:
            if self.lm is None:
                self.lm = MemoryLM.load(self.model_spec, snap.config, self.device)
            restore_snapshot(self.lm, snap)
            self.stats, self.writers, self.version = snap.stats, snap.writers, snap.version
            self.deployment = deployment
        log.info("loaded snapshot v%d of deployment %s", snap.version, deployment or "(none)")

    def follow_deployment(self) -> bool:
        """Reload when Redis serves another deployment than ours (flushed, replaced, or pointed elsewhere) or
        an older version than ours: never mix two memories. True when it reloaded."""
        deployment, published = self.store.deployment_and_version()
        if deployment == self.deployment and published >= self.version:
            return False
        log.warning("Redis serves deployment %s at version %d, this memory is deployment %s at version %d: "
                    "reloading", deployment, published, self.deployment or "(none)", self.version)
        self.load_snapshot()  # NotReadyError until the new deployment publishes its version 0
        return True

    def catch_up(self) -> int:
        """Apply every published delta after the current version; returns how many were applied."""
        if self.lm is None:
            self.load_snapshot()
        else:
            self.follow_deployment()
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
        """Apply one delta in order. On a gap (trimmed history) or a delta of another deployment, reload the
        snapshot instead."""
        if MemoryDelta.deployment_of(data) != self.deployment:
            log.warning("delta v%d belongs to another deployment: reloading the snapshot", version)
            self.load_snapshot()
            return False
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
            self.writers.update(delta.writes, delta.undone)
            self.version = version
        return True
