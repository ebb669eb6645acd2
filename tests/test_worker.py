"""The worker against a real redis-server, in-process, on the tiny model."""

import os
import time
from unittest import mock

import pytest
import redis
import torch

from model.errors import SnapshotError
from model.facts import Fact
from model.snapshot import MemoryDelta
from model.undo import UndoRecord
from worker.errors import ClientIdConflict, PublishRefused
from worker.loop import Worker
from worker.replica import MemoryReplica
from worker.settings import WorkerSettings
from worker.store import FactStatus, RedisStore


def make_worker(env, **overrides) -> Worker:
    with mock.patch.dict(os.environ, env):
        settings = WorkerSettings(**overrides)
    return Worker(settings, RedisStore.connect(env["SMFT_REDIS_URL"]))


def store(env) -> RedisStore:
    return RedisStore.connect(env["SMFT_REDIS_URL"])


def raw(env) -> redis.Redis:
    """Redis itself, for what no part of the service does (a stray duplicate entry, the stream's length)."""
    return redis.Redis.from_url(env["SMFT_REDIS_URL"])


FACTS = [Fact("Mira Quell invented the Zorblax engine."), Fact("The river Tessa flows to the sea."),
         Fact("The fox jumps over the lazy dog twice.")]


def test_burst_learns_every_fact_once_and_publishes_versions_in_order(tiny_env):
    p = store(tiny_env)
    p.ensure_group()
    ids = [p.enqueue(f)[0] for f in FACTS]
    make_worker(tiny_env, batch_facts=2).run(burst=True)
    records = [p.fact_record(i) for i in ids]
    assert all(r["status"] == "learned" for r in records)
    assert sorted({int(r["version"]) for r in records}) == [1, 2]  # 2 + 1 facts in batches of 2
    assert p.published_version() == 2 and p.queue_depth() == 0
    deltas = [MemoryDelta.from_bytes(d) for _, d in p.deltas_after(0)]
    assert [d.version for d in deltas] == [1, 2]
    assert sorted(f for d in deltas for f in d.fact_ids) == sorted(ids)


def test_queue_age_is_the_wait_of_the_oldest_fact_not_yet_learned(tiny_env):
    p = store(tiny_env)
    p.ensure_group()
    assert p.queue_age_s() == 0.0
    p.enqueue(FACTS[0])
    time.sleep(0.3)
    p.enqueue(FACTS[1])
    waiting = p.queue_age_s()
    assert 0.3 <= waiting < 5
    p.claim("someone", 1, block_ms=None)  # delivered, not acknowledged
    assert p.queue_age_s() >= waiting  # still the oldest, now pending
    make_worker(tiny_env).run(burst=True)
    assert p.queue_depth() == 0 and p.queue_age_s() == 0.0


def test_replica_converges_to_the_worker(tiny_env):
    p = store(tiny_env)
    p.ensure_group()
    for f in FACTS:
        p.enqueue(f)
    worker = make_worker(tiny_env)
    worker.run(burst=True)
    replica = MemoryReplica(tiny_env["SMFT_MODEL"], "cpu", worker.settings.snapshot_dir, p)
    replica.catch_up()
    assert replica.version == worker.replica.version == p.published_version()
    assert torch.equal(replica.lm.memories[1].values, worker.replica.lm.memories[1].values)


def test_facts_already_learned_are_not_applied_again(tiny_env):
    p = store(tiny_env)
    p.ensure_group()
    fact_id, _ = p.enqueue(FACTS[0])
    make_worker(tiny_env).run(burst=True)
    # Simulate a redelivery: the entry is pending again, but the fact is in version 1.
    raw(tiny_env).xadd(p.keys.facts, {"fact_id": fact_id})
    make_worker(tiny_env).run(burst=True)
    assert p.published_version() == 1
    assert p.fact_record(fact_id)["version"] == "1"


def test_bad_fact_is_dead_lettered_and_the_loop_goes_on(tiny_env):
    p = store(tiny_env)
    p.ensure_group()
    bad, _ = p.enqueue(Fact("a"))  # one token: no useful example
    good, _ = p.enqueue(FACTS[1])
    make_worker(tiny_env, batch_facts=1).run(burst=True)  # a claim with nothing to teach does not end the burst
    assert p.fact_record(bad)["status"] == FactStatus.failed.value
    assert "token" in p.fact_record(bad)["reason"]
    assert p.fact_record(good)["status"] == FactStatus.learned.value
    assert p.dead_letter_count() == 1


def test_fact_that_keeps_crashing_goes_to_dead_letter_after_max_attempts(tiny_env):
    p = store(tiny_env)
    p.ensure_group()
    fact_id, _ = p.enqueue(FACTS[0])
    worker = make_worker(tiny_env, max_attempts=2)
    with mock.patch("worker.teaching.teach", side_effect=RuntimeError("boom")):
        worker.run(burst=True)
    record = p.fact_record(fact_id)
    assert record["status"] == "failed" and "boom" in record["reason"] and "2 times" in record["reason"]
    assert p.published_version() == 0


def test_idempotent_enqueue(tiny_env):
    p = store(tiny_env)
    p.ensure_group()
    a, created_a = p.enqueue(FACTS[0], client_id="abc")
    b, created_b = p.enqueue(FACTS[0], client_id="abc")  # a retry
    assert a == b and created_a and not created_b
    with pytest.raises(ClientIdConflict):  # the same key for other content is a mistake, not a retry
        p.enqueue(FACTS[1], client_id="abc")
    assert raw(tiny_env).xlen(p.keys.facts) == 1
    p.set_status(a, FactStatus.undone)  # taken back: the key may teach it again, as a new fact
    c, created_c = p.enqueue(FACTS[0], client_id="abc")
    assert created_c and c != a and raw(tiny_env).xlen(p.keys.facts) == 2


def test_a_list_of_facts_is_stored_all_or_nothing(tiny_env):
    p = store(tiny_env)
    p.ensure_group()
    p.enqueue(FACTS[0], client_id="taken")
    with pytest.raises(ClientIdConflict) as refused:
        p.enqueue_many([FACTS[2], FACTS[1]], [None, "taken"])
    assert refused.value.index == 1
    assert raw(tiny_env).xlen(p.keys.facts) == 1  # the first of the two was not stored either
    done = p.enqueue_many([FACTS[2], FACTS[1]], [None, "fresh"])
    assert done.created == [True, True] and raw(tiny_env).xlen(p.keys.facts) == 3


def test_publish_is_fenced_by_the_lease_and_the_version(tiny_env):
    p = store(tiny_env)
    p.init_version()
    assert p.acquire_lease("me", 5)
    with pytest.raises(PublishRefused, match="LEASE"):
        p.publish("someone-else", 1, b"x", [])
    with pytest.raises(PublishRefused, match="VERSION"):
        p.publish("me", 2, b"x", [])
    assert p.publish("me", 1, b"x", []) == 1


def test_snapshots_and_trimming(tiny_env):
    p = store(tiny_env)
    p.ensure_group()
    for i in range(5):
        p.enqueue(Fact(f"The river number {i} flows to the sea."))
    worker = make_worker(tiny_env, batch_facts=1, snapshot_every_versions=2)
    worker.run(burst=True)
    assert p.snapshot_version() == 4
    files = sorted(f.name for f in worker.settings.snapshot_dir.iterdir())
    assert files == ["v00000002.safetensors", "v00000004.safetensors"]
    assert [v for v, _ in p.deltas_after(-1)] == [3, 4, 5]  # kept since the previous snapshot
    fresh = MemoryReplica(tiny_env["SMFT_MODEL"], "cpu", worker.settings.snapshot_dir, p)
    fresh.catch_up()
    assert fresh.version == 5
    assert torch.equal(fresh.lm.memories[1].values, worker.replica.lm.memories[1].values)


def test_monitor_records_baseline_and_evaluates_every_m_versions(tiny_env):
    from worker.monitor import read_monitor

    p = store(tiny_env)
    p.ensure_group()
    for i in range(4):
        p.enqueue(Fact(f"The river number {i} flows to the sea.", question=f"Where does river {i} flow?",
                       answer="to the sea"))
    worker = make_worker(tiny_env, batch_facts=1, monitor_every_versions=2, monitor_window=8, monitor_full_every=2)
    worker.run(burst=True)
    state = read_monitor(p)
    # a rotating window, then (every 2nd evaluation) the whole probe
    assert [pt["probe_questions"] for pt in state["history"]] == [8, state["baseline"]["probe_questions"]]
    assert state["baseline"]["probe_questions"] >= 200 and state["baseline"]["nll"] > 0
    assert [pt["version"] for pt in state["history"]] == [2, 4]
    latest = state["latest"]
    assert latest["recall_facts"] == 4 and 0 <= latest["recall"] <= 1
    # the random model answers no probe question, so there is nothing it could still answer
    assert state["baseline"]["probe_answered"] == 0.0 and latest["probe_answered"] is None
    assert 0 < latest["slots_updated"] <= 4 * worker.settings.top_t and latest["queue_depth"] == 0
    p.request_evaluation()  # on demand, even with nothing to learn
    make_worker(tiny_env, monitor_every_versions=2, monitor_window=8).run(burst=True)
    assert [pt["version"] for pt in read_monitor(p)["history"]] == [2, 4, 4]


def test_stop_during_the_monitor_baseline_leaves_it_and_the_queue_for_the_next_start(tiny_env):
    import worker.monitor as monitor_module
    from worker.monitor import read_monitor

    p = store(tiny_env)
    p.ensure_group()
    fact_id = p.enqueue(FACTS[0])[0]
    worker = make_worker(tiny_env, monitor_every_versions=1)
    real, calls = monitor_module.generate_answers, []

    def answers_then_stop(*args, **kwargs):  # SIGTERM arriving after the first batch of probe questions
        calls.append(1)
        worker.stop.set()
        return real(*args, **kwargs)

    with mock.patch.object(monitor_module, "generate_answers", answers_then_stop):
        worker.run()  # not burst: only the stop ends it; without the check the whole probe would be answered
    assert len(calls) == 1 and read_monitor(p)["baseline"] is None
    assert p.snapshot_version() is None  # version 0 is published only with its baseline
    assert p.fact_record(fact_id)["status"] == FactStatus.queued.value
    make_worker(tiny_env, monitor_every_versions=1).run(burst=True)
    assert read_monitor(p)["baseline"] is not None
    assert p.fact_record(fact_id)["status"] == FactStatus.learned.value


def test_undo_takes_back_one_version_and_every_replica_follows(tiny_env):
    p = store(tiny_env)
    p.ensure_group()
    a, _ = p.enqueue(FACTS[0])
    make_worker(tiny_env).run(burst=True)
    b, _ = p.enqueue(FACTS[1])
    worker = make_worker(tiny_env)
    worker.run(burst=True)
    values_before_undo = worker.replica.lm.memories[1].values.detach().clone()
    assert p.request_undo(a) == "learned"
    assert p.request_undo(a) == "learned"  # asking twice queues one undo
    worker.run(burst=True)
    assert p.published_version() == 3
    record = p.fact_record(a)
    assert record["status"] == "undone" and record["undone_version"] == "3"
    assert p.fact_record(b)["status"] == "learned" and p.fact_record(b)["version"] == "2"
    assert p.queue_depth() == 0
    values = worker.replica.lm.memories[1].values
    assert not torch.equal(values, values_before_undo)
    replica = MemoryReplica(tiny_env["SMFT_MODEL"], "cpu", worker.settings.snapshot_dir, p)
    replica.catch_up()
    assert replica.version == 3 and torch.equal(replica.lm.memories[1].values, values)


def test_undo_of_a_batched_fact_reteaches_the_rest_of_its_batch(tiny_env):
    p = store(tiny_env)
    p.ensure_group()
    a, b = (p.enqueue(f)[0] for f in FACTS[:2])
    worker = make_worker(tiny_env, batch_facts=2)
    worker.run(burst=True)
    assert p.fact_record(a)["version"] == p.fact_record(b)["version"] == "1"
    p.request_undo(a)
    worker.run(burst=True)
    assert p.fact_record(a)["status"] == "undone"
    record_b = p.fact_record(b)
    assert record_b["status"] == "learned" and record_b["version"] == "2"  # re-taught in the undo version
    assert MemoryDelta.from_bytes(p.deltas_after(1)[0][1]).fact_ids == (b,)


def test_undo_records_beyond_the_kept_window_are_pruned_and_say_so(tiny_env):
    p = store(tiny_env)
    p.ensure_group()
    ids = [p.enqueue(f)[0] for f in FACTS]
    worker = make_worker(tiny_env, batch_facts=1, undo_keep_versions=2)
    worker.run(burst=True)
    assert sorted(f.name for f in worker.settings.journal_dir.iterdir()) == ["v00000002.safetensors",
                                                                             "v00000003.safetensors"]
    p.request_undo(ids[0])  # taught in version 1: its record is gone
    worker.run(burst=True)
    record = p.fact_record(ids[0])
    assert record["status"] == "learned" and "SMFT_UNDO_KEEP_VERSIONS" in record["reason"]
    assert p.queue_depth() == 0 and p.published_version() == 3
    p.request_undo(ids[2])  # still in the window
    worker.run(burst=True)
    assert p.fact_record(ids[2])["status"] == "undone"


def test_undo_before_learning_cancels_the_fact(tiny_env):
    p = store(tiny_env)
    p.ensure_group()
    a, _ = p.enqueue(FACTS[0])
    assert p.request_undo(a) == "queued"
    make_worker(tiny_env).run(burst=True)
    assert p.fact_record(a)["status"] == "undone" and p.published_version() == 0
    assert p.queue_depth() == 0
    assert p.request_undo(a) == "undone" and p.request_undo("nope") is None


def _same_as_a_fresh_replica(env, worker) -> bool:
    replica = MemoryReplica(env["SMFT_MODEL"], "cpu", worker.settings.snapshot_dir, store(env))
    replica.catch_up()
    return replica.version == worker.replica.version and torch.equal(
        replica.lm.memories[1].values, worker.replica.lm.memories[1].values)


def test_a_failure_between_training_and_publishing_leaves_the_leader_on_the_published_table(tiny_env):
    p = store(tiny_env)
    p.ensure_group()
    ids = [p.enqueue(f)[0] for f in FACTS]
    # One try per fact, so the first fact's trained rows are never trained again by a retry that would
    # publish them; few rows per batch, so later facts do not rewrite them all either; no snapshot after
    # version 0, so the replica below replays every delta (a snapshot would carry stray rows as well).
    worker = make_worker(tiny_env, batch_facts=1, max_attempts=1, top_t=6, snapshot_every_versions=1000)
    save, failed = UndoRecord.save, []

    def disk_full_once(record, path):
        if not failed:
            failed.append(path)
            raise OSError(28, "No space left on device")
        return save(record, path)

    with mock.patch.object(UndoRecord, "save", disk_full_once):
        worker.run(burst=True)
    first = p.fact_record(ids[0])
    assert failed and first["status"] == "failed" and "No space left" in first["reason"]
    assert [p.fact_record(i)["status"] for i in ids[1:]] == ["learned", "learned"]
    # The rows the failed try trained were never published: the leader must not keep them.
    assert _same_as_a_fresh_replica(tiny_env, worker)


def test_redis_failures_while_publishing_spend_no_attempt(tiny_env):
    p = store(tiny_env)
    p.ensure_group()
    fact_id, _ = p.enqueue(FACTS[0])
    worker = make_worker(tiny_env, max_attempts=3)
    publish, failures = RedisStore.publish, []

    def flaky(self, *args, **kwargs):
        if len(failures) < 3:
            failures.append(1)
            raise redis.ConnectionError("Connection reset by peer")
        return publish(self, *args, **kwargs)

    with mock.patch.object(RedisStore, "publish", flaky):
        worker.run(burst=True)
    record = p.fact_record(fact_id)
    assert len(failures) == 3 and record["status"] == "learned" and record["attempts"] == "0"
    assert p.dead_letter_count() == 0 and _same_as_a_fresh_replica(tiny_env, worker)


def test_a_correction_takes_back_the_fact_it_replaces_in_the_version_that_teaches_it(tiny_env):
    p = store(tiny_env)
    p.ensure_group()
    old, mate = (p.enqueue(f)[0] for f in (Fact("The office of Quell and Co is in Paris."), FACTS[1]))
    worker = make_worker(tiny_env, batch_facts=2)
    worker.run(burst=True)
    assert p.fact_record(old)["version"] == p.fact_record(mate)["version"] == "1"
    new = p.enqueue_many([Fact("The office of Quell and Co moved to Leeds.")], replaces=[old]).fact_ids[0]
    worker.run(burst=True)
    assert p.published_version() == 2
    new_record, old_record, mate_record = (p.fact_record(i) for i in (new, old, mate))
    assert new_record["status"] == "learned" and new_record["version"] == "2" and new_record["replaces"] == old
    assert old_record["status"] == "undone" and old_record["undone_version"] == "2"
    assert old_record["replaced_by"] == new
    assert mate_record["status"] == "learned" and mate_record["version"] == "2"  # its batch-mate, taught again
    assert set(MemoryDelta.from_bytes(p.deltas_after(1)[0][1]).fact_ids) == {new, mate}
    assert _same_as_a_fresh_replica(tiny_env, worker)


def test_a_correction_queued_with_the_fact_it_replaces_cancels_it(tiny_env):
    p = store(tiny_env)
    p.ensure_group()
    old, _ = p.enqueue(Fact("The office of Quell and Co is in Paris."))
    new = p.enqueue_many([Fact("The office of Quell and Co moved to Leeds.")], replaces=[old]).fact_ids[0]
    make_worker(tiny_env, batch_facts=2).run(burst=True)
    old_record = p.fact_record(old)
    assert old_record["status"] == "undone" and old_record["replaced_by"] == new
    assert p.fact_record(new)["status"] == "learned" and p.published_version() == 1 and p.queue_depth() == 0
    assert MemoryDelta.from_bytes(p.deltas_after(0)[0][1]).fact_ids == (new,)


def test_writes_cut_short_leave_no_file_behind_once_a_leader_starts(tiny_env):
    p = store(tiny_env)
    p.ensure_group()
    worker = make_worker(tiny_env)
    worker.run(burst=True)  # version 0 prepared and written
    left = [worker.settings.snapshot_dir / ".v00000001.safetensors.tmp-1-abc",
            worker.settings.journal_dir / ".v00000001.safetensors.tmp-1-def"]
    for path in left:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a file")
    make_worker(tiny_env).run(burst=True)
    assert not any(path.exists() for path in left)
    assert (worker.settings.snapshot_dir / "v00000000.safetensors").exists()


def test_a_snapshot_file_that_is_not_the_version_redis_names_is_refused(tiny_env):
    p = store(tiny_env)
    p.ensure_group()
    worker = make_worker(tiny_env)
    worker.run(burst=True)  # version 0
    snapshots = worker.settings.snapshot_dir
    (snapshots / "v00000000.safetensors").rename(snapshots / "v00000003.safetensors")  # copied by hand
    p.set_snapshot(3)
    replica = MemoryReplica(tiny_env["SMFT_MODEL"], "cpu", snapshots, p)
    with pytest.raises(SnapshotError, match="holds version 0"):
        replica.load_snapshot()


def test_redis_memory_stays_bounded_stream_client_ids_and_dead_letters(tiny_env, monkeypatch):
    import worker.store

    p = store(tiny_env)
    p.ensure_group()
    ids = [p.enqueue_many([f], [f"key-{i}"], client_id_ttl_s=3600).fact_ids[0] for i, f in enumerate(FACTS)]
    assert 0 < raw(tiny_env).ttl(p.keys.client("key-0")) <= 3600  # client ids expire
    monkeypatch.setattr(worker.store, "DEAD_LETTERS_KEPT", 2)
    for _ in range(3):
        p.enqueue(Fact("a"))  # one token: dead-lettered at once
    make_worker(tiny_env, snapshot_every_versions=1).run(burst=True)
    assert all(p.fact_record(i)["status"] == "learned" for i in ids)
    assert raw(tiny_env).xlen(p.keys.facts) <= 1  # trimmed behind what was done (the last one may stay)
    assert p.dead_letter_count() == 2 and p.queue_depth() == 0
    late, _ = p.enqueue(FACTS[0])  # entries after the trim are still taught
    make_worker(tiny_env).run(burst=True)
    assert p.fact_record(late)["status"] == "learned"
