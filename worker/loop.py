"""The training loop: read fact batches from the stream, teach them, publish deltas, then ack."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from model.corpus import load_corpus
from model.errors import FactError
from model.facts import Fact, check_fact
from model.learners import SparseMemoryLearner
from model.lm import MemoryLM
from model.prepare import prepare_version_zero
from model.snapshot import make_delta, remove_temporary_files
from model.undo import UndoRecord, revert
from worker.errors import LeadershipLost, NotReadyError, PublishRefused
from worker.lease import Lease
from worker.monitor import Monitor
from worker.replica import (
    MemoryReplica,
    deployment_dir,
    new_version_file,
    remove_versions_before,
    version_path,
    write_snapshot,
)
from worker.settings import WorkerSettings
from worker.store import UNAVAILABLE, FactStatus, RedisStore, fact_from_record
from worker.teaching import teach_facts

log = logging.getLogger(__name__)


@dataclass
class Claimed:
    entry_id: str
    fact: Fact
    undo: bool = False  # take the fact back instead of teaching it
    replaces: str = ""  # a fact this one corrects: taken back in the version that teaches this one


class Worker:
    def __init__(self, settings: WorkerSettings, store: RedisStore) -> None:
        self.settings = settings
        self.owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        # Every write the leader makes to Redis is fenced by its lease (a deposed leader changes nothing).
        self.store = store.fenced(self.owner, settings.fact_record_ttl_s)
        self.lease = Lease(self.store, self.owner, settings.lease_ttl_s)
        self.replica = MemoryReplica(settings.model, settings.device, settings.snapshot_dir, self.store)
        self.stop = threading.Event()
        self.learner: SparseMemoryLearner | None = None
        self._last_snapshot = (0, time.monotonic())  # (version, when)
        self.monitor = (Monitor(self.store, settings.monitor_window, settings.monitor_full_every,
                                probe_size=settings.monitor_probe)
                        if settings.monitor_every_versions else None)
        self._monitored = -1  # last version evaluated
        self._recent: deque[tuple[str, str]] = deque(maxlen=32)  # taught (question, answer) for recall
        # Facts whose try was cut short by Redis or the lease, not by themselves: their next claim spends
        # no attempt (a fact found "training" otherwise means its try died with its worker).
        self._interrupted: set[str] = set()
        self._background_fingerprint: str | None = None  # of the configured corpus, read once per process

    # --- life cycle -----------------------------------------------------------------------------
    def run(self, burst: bool = False) -> None:
        """Serve as leader until stopped (or, in burst mode, until the queue is drained)."""
        while not self.stop.is_set():
            try:
                self.store.ensure_group()
                if not self.lease.wait_acquire(self.stop):
                    return
                try:
                    self._synchronise()
                    drained = self._lead(burst)
                finally:
                    self.lease.release()
            except (LeadershipLost, NotReadyError) as exc:  # NotReady: Redis flushed while we synchronised
                log.warning("worker %s: %s; resynchronising", self.owner, exc)
                continue
            except UNAVAILABLE as exc:
                # Redis restarting, or out of memory (its maxmemory reached): nothing was acknowledged that is
                # not in it; wait and resynchronise.
                log.warning("redis unavailable (%s: %s); retrying in 1s", type(exc).__name__, exc)
                self.stop.wait(1.0)
                continue
            if drained:
                return

    def _synchronise(self) -> None:
        """Bring the model to the newest published version, preparing version 0 if none exists."""
        if self.store.snapshot_version() is None and not self._prepare_version_zero():
            return  # stopped while preparing: nothing was published, the next start prepares it again
        self._load_published()
        self._remove_unpublished_files()
        self._check_background()
        self._check_memory_shape()
        baseline = self.monitor.baseline() if self.monitor else None
        if self.monitor and baseline is None:  # a version 0 prepared with the monitor off
            if self.replica.version == 0:
                if not self._record_baseline(self.replica.lm):
                    return
                baseline = self.monitor.baseline()
            else:
                log.warning("no monitor baseline and version %d > 0: monitor off", self.replica.version)
                self.monitor = None
        if baseline is not None and len(baseline["probe_f1"]) != len(self.monitor.probe):
            log.warning("the monitor baseline was recorded on %d probe questions, SMFT_MONITOR_PROBE asks for %d: "
                        "monitor off", len(baseline["probe_f1"]), len(self.monitor.probe))
            self.monitor = None
        self._last_snapshot = (self.replica.version, time.monotonic())
        log.info("worker %s leads from version %d", self.owner, self.replica.version)

    def _load_published(self) -> None:
        """The table as published, newest version: what every replica holds. Anything trained here and
        not published (a try that failed half-way) is dropped with the learner's record of it."""
        self.replica.load_snapshot()
        self.replica.catch_up()
        assert self.replica.lm is not None and self.replica.stats is not None
        self.learner = SparseMemoryLearner(self.replica.lm, self.replica.stats, self.settings.sparse_config())

    @property
    def _snapshots(self) -> Path:
        return deployment_dir(self.settings.snapshot_dir, self.replica.deployment)

    @property
    def _journal(self) -> Path:
        return deployment_dir(self.settings.journal_dir, self.replica.deployment)

    def _journal_path(self, version: int) -> Path:
        """The undo record Redis names for a version (the pre-id name where it names none)."""
        name = self.store.journal_file(version)
        return self.settings.journal_dir / name if name else version_path(self._journal, version)

    def _remove_unpublished_files(self) -> None:
        """What this deployment's folders hold that no published version names: writes cut short (temporary
        files) and undo records of versions whose publish was refused (a deposed leader's). Only the leader
        writes there, and it is us."""
        for directory in (self._snapshots, self._journal):
            for leftover in remove_temporary_files(directory):
                log.warning("removed %s, left by a write that never finished", leftover)
        named = {self.settings.journal_dir / name for name in self.store.journal_files().values()}
        for path in self._journal.glob("v*-*.safetensors"):
            if path not in named:
                log.warning("removed %s: an undo record of a version never published", path)
                path.unlink(missing_ok=True)

    def _check_memory_shape(self) -> None:
        """Say so when the memory configured now (SMFT_N_KEYS, SMFT_MEMORY_VALUE_DTYPE, ...) is not the one this
        deployment was prepared with: its snapshot's shape is what every version is written in, so the deployment
        keeps it, a default changed by an upgrade included."""
        assert self.replica.lm is not None
        held, configured = self.replica.lm.config, self.settings.memory_config()
        names = [f.name for f in fields(configured) if f.name != "layers" or configured.layers is not None]
        differ = [f"{name} {getattr(held, name)!r} (configured: {getattr(configured, name)!r})" for name in names
                  if getattr(held, name) != getattr(configured, name)]
        if differ:
            log.warning("this deployment's memory is not the one configured, and keeps its own: %s; a new data "
                        "directory or namespace starts one with the configured memory", ", ".join(differ))

    def _check_background(self) -> None:
        """Say so when the background corpus configured now is not the one this deployment's slot statistics
        came from: the statistics in the snapshot stay what TF-IDF uses (changing them under a taught table
        would move which rows count as specific)."""
        assert self.replica.stats is not None
        if self._background_fingerprint is None:
            try:
                self._background_fingerprint = load_corpus(self.settings.background or None).fingerprint
            except (OSError, ValueError) as exc:  # unreadable now; the deployment does not need it
                log.warning("could not read the configured background corpus (%s); the deployment keeps its "
                            "slot statistics", exc)
                return
        configured = self._background_fingerprint
        if configured != self.replica.stats.fingerprint:
            log.warning("the background corpus configured (SMFT_BACKGROUND, fingerprint %s) is not the one this "
                        "deployment's slot statistics came from (%s): the deployment keeps its statistics; a new "
                        "data directory or namespace starts one on the new corpus", configured[:12],
                        self.replica.stats.fingerprint[:12])

    def _prepare_version_zero(self) -> bool:
        """Prepare and publish version 0 of a new deployment (and the monitor's baseline on it); False if
        stopped first."""
        if self.store.published_version() > 0:
            raise RuntimeError(f"Redis has published versions but no snapshot; is {self.settings.data_dir} the "
                               "data directory the worker used before?")
        log.info("preparing version 0: input centring and background slot statistics")
        lm = MemoryLM.load(self.settings.model, self.settings.memory_config(), self.settings.device)
        corpus = load_corpus(self.settings.background or None)
        stats, _ = prepare_version_zero(lm, corpus)
        # The baseline comes before version 0 is published, so that the API is ready only once the first
        # fact can be learned at once, rather than a minute later behind the baseline.
        if self.monitor and self.monitor.baseline() is None and not self._record_baseline(lm):
            return False
        deployment = uuid.uuid4().hex[:12]
        if any(self.settings.snapshot_dir.glob("v*.safetensors")) or any(
                self.settings.snapshot_dir.glob("*/v*.safetensors")):
            log.warning("Redis holds no deployment, but %s holds snapshots of earlier ones (kept, not used): "
                        "starting deployment %s from version 0", self.settings.snapshot_dir, deployment)
        path = write_snapshot(lm, stats, 0, deployment_dir(self.settings.snapshot_dir, deployment),
                              deployment=deployment)
        if not self.store.begin_deployment(deployment, str(path.relative_to(self.settings.snapshot_dir))):
            path.unlink(missing_ok=True)  # another worker began one first: follow it
        return True

    def _record_baseline(self, lm: MemoryLM) -> bool:
        assert self.monitor is not None
        log.info("recording the monitor baseline on version 0")
        if self.monitor.record_baseline(lm, self.stop):
            return True
        log.info("stopped before the monitor baseline was recorded; the next start records it")
        return False

    # --- leading --------------------------------------------------------------------------------
    def _lead(self, burst: bool) -> bool:
        while not self.stop.is_set():
            if not self.lease.held.is_set():
                raise LeadershipLost("lease lost")
            claimed = self._claim(block=not burst)
            if claimed is None:  # nothing in the stream (entries all done or dead-lettered are not nothing)
                self.store.trim_facts_stream()  # idle: entries of facts already done go
                self._maybe_snapshot()
                self._maybe_monitor(idle=True)
                if burst:
                    return True
                continue
            teach_now = [c for c in claimed if not c.undo]
            if teach_now:
                self._teach_and_publish(teach_now)
            for c in claimed:
                if c.undo:
                    try:
                        self._undo_and_publish(c)
                    except (LeadershipLost, *UNAVAILABLE):
                        raise
                    except Exception:  # stays pending: the next claim retries it (bounded by max_attempts)
                        log.exception("undo of fact %s failed", c.fact.fact_id)
            self._maybe_snapshot()
            self._maybe_monitor()
        return True

    def _claim(self, block: bool) -> list[Claimed] | None:
        """Up to batch_facts facts: first any left pending (by us or a dead leader), then new ones.
        None when the stream had no entry for us."""
        entries = self.store.claim(self.owner, self.settings.batch_facts, self.settings.poll_ms if block else None)
        if not entries:
            return None
        return [c for c in (self._admit(entry_id, fields) for entry_id, fields in entries) if c]

    def _admit(self, entry_id: str, fields: dict[str, str]) -> Claimed | None:
        """The fact to train on, or None when it is done, unknown or dead-lettered."""
        fact_id = fields.get("fact_id", "")
        undo = fields.get("kind") == "undo"
        record = self.store.fact_record(fact_id) or {}
        status = record.get("status", "")
        if undo and status == FactStatus.learned.value:
            tries = self.store.count_attempt(fact_id, "undo_attempts")
            if tries > self.settings.max_attempts:
                log.error("fact %s: undo failed %d times; giving up", fact_id, tries - 1)
                self.store.give_up_undo(fact_id, entry_id, f"undo failed {tries - 1} times")
                return None
            return Claimed(entry_id, fact_from_record(fact_id, record), undo=True)
        if record and status != FactStatus.undone.value and (undo or "undo_requested" in record):
            # Taken back before any version taught it: nothing to revert.
            self.store.mark_undone(fact_id, entry_id)
            return None
        if undo or not record or status in (FactStatus.learned.value, FactStatus.failed.value, FactStatus.undone.value):
            # Already in a published version (or given up, or taken back): only the ack is left.
            self.store.ack(entry_id)
            return None
        if status == FactStatus.training.value and fact_id not in self._interrupted:
            # Its last try never finished and nobody recorded why: the worker teaching it died. That try counts.
            attempts = self.store.count_attempt(fact_id)
            if attempts >= self.settings.max_attempts:
                reason = record.get("reason") or "the worker stopped while teaching it"
                self._give_up(fact_id, entry_id, f"failed {attempts} times: {reason}")
                return None
        self._interrupted.discard(fact_id)
        try:
            fact = fact_from_record(fact_id, record)
            assert self.replica.lm is not None
            check_fact(fact, self.replica.lm.tokenizer)
        except (FactError, ValueError, KeyError) as exc:
            self._give_up(fact_id, entry_id, f"invalid fact: {exc}")
            return None
        return Claimed(entry_id, fact, replaces=record.get("replaces", ""))

    def _give_up(self, fact_id: str, entry_id: str, reason: str) -> None:
        log.warning("fact dead-lettered: %s", reason, extra={"fact_id": fact_id})
        self.store.dead_letter(fact_id, entry_id, reason)

    def _teach_and_publish(self, claimed: list[Claimed]) -> None:
        try:
            self._teach_group(claimed)
        except (LeadershipLost, *UNAVAILABLE):
            # Not the facts' fault: run() resynchronises, and they are taught again without a spent attempt.
            self._interrupted.update(c.fact.fact_id for c in claimed)
            raise
        except Exception as exc:
            # Whatever failed (teaching, the undo record's save, the delta), the table may hold rows that
            # were trained and never published: back to the published version before anything else.
            self._load_published()
            if len(claimed) > 1:  # isolate the fact that breaks the batch
                log.warning("batch of %d failed (%s); teaching its facts one by one", len(claimed), exc)
                for one in claimed:
                    self._teach_and_publish([one])
                return
            fact_id, reason = claimed[0].fact.fact_id, f"{type(exc).__name__}: {exc}"
            attempts = self.store.count_attempt(fact_id)
            if attempts >= self.settings.max_attempts:
                log.exception("fact %s failed %d times; giving up", fact_id, attempts)
                self._give_up(fact_id, claimed[0].entry_id, f"failed {attempts} times: {reason}")
                return
            log.exception("fact %s failed; it stays pending for another attempt", fact_id)
            self.store.set_status(fact_id, FactStatus.queued, reason=reason)

    def _teach_group(self, claimed: list[Claimed]) -> None:
        """Teach a batch and publish it as one version, taking back in the same version the facts it replaces."""
        ids = {c.fact.fact_id for c in claimed}
        # A correction queued behind the fact it corrects, in the same batch: that fact is not taught at all.
        superseded = {c.replaces: c.fact.fact_id for c in claimed if c.replaces in ids}
        teach_now = [c for c in claimed if c.fact.fact_id not in superseded]
        undone = [(c.fact.fact_id, c.entry_id, superseded[c.fact.fact_id]) for c in claimed
                  if c.fact.fact_id in superseded]
        take_back = {c.replaces: c.fact.fact_id for c in teach_now if c.replaces and c.replaces not in ids}
        for c in teach_now:
            self.store.set_status(c.fact.fact_id, FactStatus.training)
        with self.replica.lock:
            reverted, mates, taken = self._take_back(take_back)
            steps = self._teach_facts([c.fact for c in teach_now] + mates)
        learned = [(c.fact.fact_id, c.entry_id, steps) for c in teach_now] + [(f.fact_id, "", steps) for f in mates]
        version = self._publish(reverted, learned, undone + taken)
        self._recent.extend((c.fact.question, c.fact.answer) for c in teach_now if c.fact.question and c.fact.answer)
        fact_ids = [c.fact.fact_id for c in teach_now]
        log.info("v%d: taught %d fact(s) in %d steps", version, len(teach_now), steps,
                 extra={"version": version, "fact_ids": fact_ids, "steps": steps,
                        "replaced": [old for old, _, _ in undone + taken], "retaught": [f.fact_id for f in mates]})

    def _teach_facts(self, facts: list[Fact]) -> int:
        """Teach one batch in place (caller holds the replica lock); returns the steps taken."""
        assert self.learner is not None and self.replica.lm is not None
        return teach_facts(self.replica.lm, self.learner, facts, self.settings).steps

    def _publish(self, reverted: dict[int, torch.Tensor], learned: list[tuple[str, str, int]],
                 undone: list[tuple[str, str, str]] = ()) -> int:
        """Publish the rows changed since the last version (reverted ones included) as the next one.

        The undo record goes to disk first, so a version on Redis always has one.
        """
        assert self.learner is not None and self.replica.lm is not None
        lm, version = self.replica.lm, self.replica.version + 1
        touched = self.learner.take_touched_with_before()
        writes = self.learner.take_writes()
        record = UndoRecord.capture(lm, version, [f for f, _, _ in learned], touched)
        # Under a name no other writer can take: the publish names it in Redis, so a record a deposed
        # leader writes for the same version is never read.
        path = record.save(new_version_file(self._journal, version))
        changed = {i: torch.unique(torch.cat([touched[i][0], reverted.get(i, touched[i][0][:0])]))
                   for i in touched}
        delta = make_delta(lm, version, changed, record.fact_ids, writes, [fact for fact, _, _ in undone],
                           self.replica.deployment)
        # A refusal (PublishRefused) is a LeadershipLost: our in-memory rows are ahead of what was
        # published, and run() drops them by resynchronising.
        try:
            self.store.publish(self.owner, version, delta.to_bytes(), learned, undone,
                               str(path.relative_to(self.settings.journal_dir)), self.replica.deployment)
        except PublishRefused:
            path.unlink(missing_ok=True)  # certainly not published (a lost reply may have been: kept)
            raise
        if self.settings.undo_keep_versions:
            pruned = remove_versions_before(self._journal, version - self.settings.undo_keep_versions + 1)
            self.store.forget_journal(pruned)
        with self.replica.lock:
            self.replica.writers.update(delta.writes, delta.undone)
            self.replica.version = version
        return version

    def _undo_and_publish(self, claimed: Claimed) -> None:
        """Take back the version that taught the fact, re-teach the facts that shared its batch."""
        fact_id = claimed.fact.fact_id
        missing = self._missing_undo_record(fact_id, int((self.store.fact_record(fact_id) or {}).get("version", -1)))
        if missing:
            self.store.give_up_undo(fact_id, claimed.entry_id, f"undo failed: {missing}")
            return
        assert self.replica.lm is not None
        with self.replica.lock:
            try:
                reverted, keep, taken = self._take_back({fact_id: ""}, {fact_id: claimed.entry_id})
                steps = self._teach_facts(keep) if keep else 0
            except Exception:
                self._load_published()  # drop the half-done undo; the entry stays pending
                raise
        version = self._publish(reverted, [(f.fact_id, "", steps) for f in keep], taken)
        log.info("v%d: took back a fact; re-taught %d fact(s) of its batch", version, len(keep),
                 extra={"version": version, "fact_id": fact_id, "retaught": [f.fact_id for f in keep]})

    def _missing_undo_record(self, fact_id: str, taught_in: int) -> str:
        """Why the fact cannot be taken back ('' when it can): the record of its version was pruned."""
        if self._journal_path(taught_in).exists():
            return ""
        reason = f"no undo record for version {taught_in} in {self._journal}"
        if self.settings.undo_keep_versions:
            reason += f" (the newest {self.settings.undo_keep_versions} are kept, SMFT_UNDO_KEEP_VERSIONS)"
        log.error("fact %s: %s", fact_id, reason)
        return reason

    def _take_back(self, facts: dict[str, str], entries: dict[str, str] | None = None
                   ) -> tuple[dict[int, torch.Tensor], list[Fact], list[tuple[str, str, str]]]:
        """Revert, in the table (the caller holds the lock), the versions that taught `facts` (fact id ->
        the id of the fact replacing it, or ''). Returns the rows rewritten per layer, the facts that shared
        those versions and must be taught again, and what the publish marks undone (with `entries`' stream
        entry ids). A fact not learned yet is simply marked undone; one whose version's undo record is gone
        stays learned, and says so in its reason."""
        entries = entries or {}
        reverted: dict[int, list[torch.Tensor]] = {}
        keep: list[Fact] = []
        undone = []
        versions: dict[int, list[str]] = {}
        for fact_id, replaced_by in facts.items():
            record = self.store.fact_record(fact_id) or {}
            if record.get("status") == FactStatus.learned.value:
                missing = self._missing_undo_record(fact_id, int(record["version"]))
                if missing:
                    self.store.set_reason(fact_id, f"could not be taken back for {replaced_by}: {missing}")
                    continue
                versions.setdefault(int(record["version"]), []).append(fact_id)
            elif record.get("status") in (FactStatus.undone.value, FactStatus.failed.value, None):
                continue
            undone.append((fact_id, entries.get(fact_id, ""), replaced_by))
        for taught_in in sorted(versions, reverse=True):
            journal = UndoRecord.load(self._journal_path(taught_in))
            for layer, ids in revert(self.replica.lm, journal).items():
                reverted.setdefault(layer, []).append(ids)
            for mate in journal.fact_ids:
                if mate in facts:
                    continue
                mate_record = self.store.fact_record(mate) or {}
                if mate_record.get("status") != FactStatus.learned.value or int(mate_record.get("version", -1)) \
                        != taught_in:
                    continue
                if "undo_requested" in mate_record:
                    undone.append((mate, "", ""))  # its own undo entry will find it done
                else:
                    keep.append(fact_from_record(mate, mate_record))
        return {layer: torch.unique(torch.cat(ids)) for layer, ids in reverted.items()}, keep, undone

    def _maybe_monitor(self, idle: bool = False) -> None:
        if self.monitor is None or self.replica.lm is None:
            return
        every = self.settings.monitor_every_versions
        version = self.replica.version
        due = self.monitor.take_request() or (not idle and version % every == 0 and version != self._monitored)
        if due:
            self._monitored = version
            try:
                with self.replica.lock:
                    self.monitor.evaluate(self.replica.lm, self.replica.version, list(self._recent))
            except Exception:  # the monitor must never stop learning
                log.exception("monitor evaluation failed")

    def _maybe_snapshot(self) -> None:
        last_version, last_time = self._last_snapshot
        version = self.replica.version
        if version <= last_version:
            return
        due = version - last_version >= self.settings.snapshot_every_versions
        due = due or time.monotonic() - last_time >= self.settings.snapshot_every_s
        if not due:
            return
        assert self.replica.lm is not None and self.replica.stats is not None
        path = write_snapshot(self.replica.lm, self.replica.stats, version, self._snapshots, self.replica.writers,
                              self.replica.deployment)
        try:  # fenced: a deposed leader's snapshot is never pointed at
            self.store.set_snapshot(version, str(path.relative_to(self.settings.snapshot_dir)),
                                    self.replica.deployment)
        except LeadershipLost:
            path.unlink(missing_ok=True)
            raise
        # The previous snapshot stays (a replica may be loading it); older ones, and what stray writers left
        # before it, go. Keep the deltas since the previous snapshot, so a replica slightly behind needs no reload.
        remove_versions_before(self._snapshots, last_version, keep={path})
        self.store.trim_deltas_through(last_version)
        self.store.trim_facts_stream()  # and under steady load, which never leaves the loop idle
        self._last_snapshot = (version, time.monotonic())
        log.info("snapshot v%d written", version)


def run_worker(settings: WorkerSettings, burst: bool = False) -> None:
    """Connect to Redis and lead (or stand by) until SIGTERM or SIGINT; with `burst`, until the queue is drained."""
    if not settings.redis_url:
        raise SystemExit("the worker needs --redis-url or SMFT_REDIS_URL (`smft serve` starts a private Redis)")
    store = RedisStore.connect(settings.redis_url, settings.namespace)
    worker = Worker(settings, store)
    signal.signal(signal.SIGTERM, lambda *_: worker.stop.set())
    signal.signal(signal.SIGINT, lambda *_: worker.stop.set())
    try:
        worker.run(burst=burst)
    finally:
        store.close()
