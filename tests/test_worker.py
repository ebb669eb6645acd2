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
from worker.errors import ClientIdConflict, LeadershipLost, PublishRefused
from worker.loop import Worker
from worker.replica import MemoryReplica, version_of_file
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
    assert torch.equal(replica.lm.memories[1].values.cpu(), worker.replica.lm.memories[1].values.cpu())


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
    assert _versions(worker, "_snapshots") == [2, 4]
    assert [v for v, _ in p.deltas_after(-1)] == [3, 4, 5]  # kept since the previous snapshot
    fresh = MemoryReplica(tiny_env["SMFT_MODEL"], "cpu", worker.settings.snapshot_dir, p)
    fresh.catch_up()
    assert fresh.version == 5
    assert torch.equal(fresh.lm.memories[1].values.cpu(), worker.replica.lm.memories[1].values.cpu())


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


def test_a_smaller_monitor_probe_spreads_over_the_probe_and_stays_what_the_baseline_used(tiny_env, caplog):
    from model.probe import read_probe
    from worker.monitor import Monitor, read_monitor

    p = store(tiny_env)
    p.ensure_group()
    make_worker(tiny_env, monitor_every_versions=1, monitor_probe=16).run(burst=True)
    assert read_monitor(p)["baseline"]["probe_questions"] == 16
    probe = [q.question for q in read_probe()]
    spread = [probe.index(q.question) for q in Monitor(p, probe_size=16).probe]
    assert spread == sorted(set(spread)) and spread[0] == 0 and spread[-1] >= len(probe) * 15 // 16 - 1
    p.request_evaluation()
    make_worker(tiny_env, monitor_every_versions=1).run(burst=True)  # now the whole probe: not what v0 answered
    assert "recorded on 16 probe questions, SMFT_MONITOR_PROBE asks for" in caplog.text
    assert read_monitor(p)["history"] == []


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
    assert replica.version == 3 and torch.equal(replica.lm.memories[1].values, values.cpu())


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


@pytest.mark.parametrize("snapshot_every", [1, 100])
def test_every_replica_knows_which_fact_wrote_which_row(tiny_env, snapshot_every):
    """The ledger follows teaching, re-teaching and undo, from deltas alone or from a snapshot."""
    p = store(tiny_env)
    p.ensure_group()
    a, b, c = (p.enqueue(f)[0] for f in FACTS)
    worker = make_worker(tiny_env, batch_facts=2, snapshot_every_versions=snapshot_every)
    worker.run(burst=True)
    writers = worker.replica.writers
    rows = {f: sum(len(r) for r in writers.rows_of(f).values()) for f in (a, b, c)}
    assert all(n > 0 for n in rows.values())
    changed = worker.replica.lm.memories[1].values.detach().ne(0).any(dim=1).nonzero().flatten()
    owned = {int(k) & 0xFFFFFFFF for k in writers.entries[0]}
    assert owned == set(changed.tolist())  # every changed row has a writer, no writer names an untouched row
    p.request_undo(a)
    worker.run(burst=True)
    writers = worker.replica.writers  # each run() starts from the published table: a new ledger
    assert writers.rows_of(a) == {} and writers.rows_of(b) and writers.rows_of(c)
    assert a not in writers.sharing(b)
    assert _same_as_a_fresh_replica(tiny_env, worker)


def test_undo_records_beyond_the_kept_window_are_pruned_and_say_so(tiny_env):
    p = store(tiny_env)
    p.ensure_group()
    ids = [p.enqueue(f)[0] for f in FACTS]
    worker = make_worker(tiny_env, batch_facts=1, undo_keep_versions=2)
    worker.run(burst=True)
    assert _versions(worker, "_journal") == [2, 3]
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


def _versions(worker: Worker, folder: str) -> list[int]:
    """The versions of the files in this deployment's snapshots or journal folder."""
    directory = getattr(worker, folder)
    return sorted(version_of_file(f) for f in directory.iterdir())


def _ledger(replica: MemoryReplica) -> set[tuple[str, int]]:
    """(fact id, row key) for every row a live fact wrote, as the replica holds it."""
    keys, facts = replica.writers.entries
    return {(replica.writers.names[f], k) for k, f in zip(keys.tolist(), facts.tolist(), strict=True)}


def _same_as_a_fresh_replica(env, worker) -> bool:
    """A replica that loads the snapshot and replays the deltas holds the worker's table and ledger."""
    replica = MemoryReplica(env["SMFT_MODEL"], "cpu", worker.settings.snapshot_dir, store(env))
    replica.catch_up()
    return replica.version == worker.replica.version and torch.equal(  # a cpu replica of a worker on any device
        replica.lm.memories[1].values, worker.replica.lm.memories[1].values.cpu()) and \
        _ledger(replica) == _ledger(worker.replica)


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
    left = [worker._snapshots / ".v00000001.safetensors.tmp-1-abc",
            worker._journal / ".v00000001.safetensors.tmp-1-def",
            worker._journal / "v00000001-0123456789ab.safetensors"]  # a record of a version never published
    for path in left:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a file")
    make_worker(tiny_env).run(burst=True)
    assert not any(path.exists() for path in left)
    assert _versions(worker, "_snapshots") == [0]


def test_a_snapshot_file_that_is_not_the_version_redis_names_is_refused(tiny_env):
    p = store(tiny_env)
    p.ensure_group()
    worker = make_worker(tiny_env)
    worker.run(burst=True)  # version 0
    v0 = next(worker._snapshots.iterdir())
    v0.rename(worker._snapshots / "v00000003.safetensors")  # copied by hand
    p.set_snapshot(3, f"{worker.replica.deployment}/v00000003.safetensors", worker.replica.deployment)
    replica = MemoryReplica(tiny_env["SMFT_MODEL"], "cpu", worker.settings.snapshot_dir, p)
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
    assert raw(tiny_env).ttl(p.keys.fact(late)) == -1  # records are kept by default


def test_finished_fact_records_expire_when_configured(tiny_env):
    p = store(tiny_env)
    p.ensure_group()
    learned, bad, cancelled = p.enqueue(FACTS[0])[0], p.enqueue(Fact("a"))[0], p.enqueue(FACTS[1])[0]
    p.request_undo(cancelled)
    waiting = p.enqueue(FACTS[2])[0]
    make_worker(tiny_env, fact_record_ttl_s=600, batch_facts=2).run(burst=True)
    for fact_id, status in ((learned, "learned"), (bad, "failed"), (cancelled, "undone"), (waiting, "learned")):
        assert p.fact_record(fact_id)["status"] == status
        assert 0 < raw(tiny_env).ttl(p.keys.fact(fact_id)) <= 600, status


def test_a_deposed_leaders_writes_change_nothing(tiny_env):
    p = store(tiny_env)
    p.ensure_group()
    a = p.enqueue(FACTS[0])[0]
    entry = p.claim("worker-1", 1, None)[0][0]
    deposed = p.fenced("worker-1")
    assert p.acquire_lease("worker-2", 10)
    before = p.fact_record(a)
    for write in (lambda: deposed.set_status(a, FactStatus.training), lambda: deposed.count_attempt(a),
                  lambda: deposed.set_reason(a, "late"), lambda: deposed.dead_letter(a, entry, "late"),
                  lambda: deposed.mark_undone(a, entry), lambda: deposed.ack(entry),
                  lambda: deposed.set_snapshot(5, "x/v00000005.safetensors")):
        with pytest.raises(LeadershipLost):
            write()
    assert p.fact_record(a) == before and p.dead_letter_count() == 0 and p.snapshot_version() is None
    assert p.queue_depth() == 1  # still pending: not acknowledged
    p.fenced("worker-2").set_status(a, FactStatus.training)  # the leader's own writes go through
    assert p.fact_record(a)["status"] == "training"


def test_a_leader_paused_past_its_lease_changes_nothing_when_it_resumes(tiny_env):
    """The first worker stalls inside teach (a VM pause), loses its lease, the second drains the queue; when the
    first resumes, its version is refused and nothing it wrote is read: each version's undo record is the one its
    delta was made with, and an undo afterwards restores exactly what that version changed."""
    import threading

    p = store(tiny_env)
    p.ensure_group()
    ids = [p.enqueue(f)[0] for f in FACTS]
    first = make_worker(tiny_env, batch_facts=2)
    inside, resume = threading.Event(), threading.Event()
    teach = first._teach_facts

    def stalled(facts):
        inside.set()
        assert resume.wait(60)
        return teach(facts)

    first._teach_facts = stalled
    runner = threading.Thread(target=first.run, kwargs={"burst": True})
    runner.start()
    assert inside.wait(60)  # first teaches facts 0 and 1 as its version 1 (held, not published)
    raw(tiny_env).delete(p.keys.lease)
    second = make_worker(tiny_env, batch_facts=1)
    second.run(burst=True)  # versions 1, 2, 3: one fact each
    resume.set()
    runner.join(60)
    assert not runner.is_alive()

    assert p.published_version() == 3
    records = [p.fact_record(i) for i in ids]
    assert [r["status"] for r in records] == ["learned"] * 3 and sorted(int(r["version"]) for r in records) == [1, 2, 3]
    deltas = {v: MemoryDelta.from_bytes(d) for v, d in p.deltas_after(0)}
    for version, delta in deltas.items():
        record = UndoRecord.load(second._journal_path(version))
        assert record.fact_ids == delta.fact_ids, version  # first's record for its version 1 is not the one read
        assert torch.equal(record.rows[1][0], delta.rows[1][0])
    assert len(list(second._journal.iterdir())) == 3  # first's refused record was removed

    p.request_undo(ids[0])  # taught alone in version 1 by the second worker
    second.run(burst=True)
    assert [p.fact_record(i)["status"] for i in ids] == ["undone", "learned", "learned"]
    values = second.replica.lm.memories[1].values
    only_v1 = set(deltas[1].rows[1][0].tolist()) - set(deltas[2].rows[1][0].tolist()) - set(
        deltas[3].rows[1][0].tolist())
    assert only_v1 and all(values[s].eq(0).all() for s in only_v1)  # back to version 0 exactly
    assert _same_as_a_fresh_replica(tiny_env, second)


def test_a_flushed_redis_starts_a_new_deployment_that_every_replica_follows(tiny_env):
    """Redis flushed under a running worker and replica, the data directory kept: a clear new deployment (its
    own id, from version 0, its own files), the replica reloads onto it, no crash loop, no mixed table."""
    import threading

    p = store(tiny_env)
    p.ensure_group()
    for f in FACTS:
        p.enqueue(f)
    worker = make_worker(tiny_env, batch_facts=1)
    worker.run(burst=True)
    old = worker.replica.deployment
    replica = MemoryReplica(tiny_env["SMFT_MODEL"], "cpu", worker.settings.snapshot_dir, p)
    replica.catch_up()
    assert old and replica.version == 3 and replica.deployment == old

    running = threading.Thread(target=worker.run)
    running.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not worker.lease.held.is_set():
            time.sleep(0.05)
        time.sleep(0.5)  # leading: waiting on the queue
        raw(tiny_env).flushall()
        p.ensure_group()
        new = p.enqueue(Fact("The owl sings at noon in Port Orrin."))[0]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (p.fact_record(new) or {}).get("status") != "learned":
            time.sleep(0.1)
        assert p.fact_record(new)["version"] == "1"
    finally:
        worker.stop.set()
        running.join(30)
    assert p.deployment() not in (None, "", old) and worker.replica.deployment == p.deployment()
    assert (worker.settings.snapshot_dir / old).is_dir()  # the old deployment's files are kept, apart
    replica.catch_up()  # at version 3 of the old deployment: it must reload, not wait for a version 4
    assert replica.deployment == p.deployment() and replica.version == 1
    assert torch.equal(replica.lm.memories[1].values.cpu(), worker.replica.lm.memories[1].values.cpu())
    assert _same_as_a_fresh_replica(tiny_env, worker)


def test_redis_out_of_memory_makes_the_worker_wait_and_the_api_refuse_not_die(tiny_env):
    import threading

    p = store(tiny_env)
    p.ensure_group()
    a = p.enqueue(FACTS[0])[0]
    r = raw(tiny_env)
    r.config_set("maxmemory-policy", "noeviction")
    worker = make_worker(tiny_env)
    running = threading.Thread(target=worker.run)
    try:
        r.config_set("maxmemory", "1")  # every write refused from now on
        with pytest.raises(redis.OutOfMemoryError):  # what the API answers 503 to: nothing stored
            p.enqueue(FACTS[1])
        running.start()
        time.sleep(3)
        assert running.is_alive() and p.fact_record(a)["status"] == "queued" and p.published_version() == -1
        r.config_set("maxmemory", "0")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and p.fact_record(a)["status"] != "learned":
            time.sleep(0.1)
        assert p.fact_record(a)["status"] == "learned"
    finally:
        r.config_set("maxmemory", "0")
        worker.stop.set()
        if running.is_alive():
            running.join(30)


def test_a_worker_says_when_the_memory_configured_is_not_the_deployments_and_keeps_its_own(tiny_env, caplog):
    """A default changed by an upgrade (SMFT_N_KEYS, the value dtype) must not silently reshape a deployment."""
    first = make_worker(tiny_env, memory_value_dtype="float32")  # a deployment from before the bfloat16 default
    first.run(burst=True)
    with caplog.at_level("WARNING", logger="worker.loop"):
        later = make_worker(tiny_env, n_keys=20)
        later.run(burst=True)
    assert "n_keys 16 (configured: 20)" in caplog.text
    assert "value_dtype 'float32' (configured: 'bfloat16')" in caplog.text
    assert later.replica.lm.config == first.replica.lm.config
    caplog.clear()
    with caplog.at_level("WARNING", logger="worker.loop"):
        make_worker(tiny_env, memory_value_dtype="float32").run(burst=True)
    assert "memory is not the one configured" not in caplog.text


def test_a_worker_says_when_its_background_corpus_is_not_the_deployments(tiny_env, tmp_path, caplog):
    make_worker(tiny_env).run(burst=True)  # version 0 on the test corpus
    other = tmp_path / "other.txt"
    other.write_text("\n\n".join(f"Other document {i}: the owl sings at noon {i} times. " * 30 for i in range(4)))
    with caplog.at_level("WARNING", logger="worker.loop"):
        make_worker(tiny_env, background=[other]).run(burst=True)
    assert "is not the one this deployment's slot statistics came from" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="worker.loop"):
        make_worker(tiny_env).run(burst=True)
    assert "slot statistics came from" not in caplog.text
