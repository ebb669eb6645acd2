"""The Redis contract between the API and the worker: key names, fact records, atomic scripts.

- `{ns}:facts`          stream of work, read by the consumer group `{ns}:learners`: `fact_id` (teach it)
                        or `fact_id` with `kind=undo` (take back what it taught)
- `{ns}:fact:{id}`      hash: the fact (JSON) and its status
- `{ns}:client:{cid}`   fact id for a client-supplied idempotency id
- `{ns}:deltas`         stream of memory deltas; entry id "{version}-1", field `delta` (safetensors bytes)
- `{ns}:version`        newest published version
- `{ns}:snapshot`       newest snapshot version on disk
- `{ns}:lease`          leader lease (owner id, with a TTL)
- `{ns}:deadletter`     list of JSON records of facts that failed too often
- `{ns}:monitor:*`      forgetting monitor: version-0 baseline, history, on-demand request flag
- `{ns}:rate:{client}`  teaching rate limit of one client (token bucket, shared by every API replica)
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from enum import Enum
from typing import Any

import redis

from model.facts import Fact


class FactStatus(str, Enum):
    queued = "queued"
    training = "training"
    learned = "learned"
    failed = "failed"
    undone = "undone"  # taken back by DELETE (or cancelled before it was learned)


@dataclass(frozen=True)
class Keys:
    ns: str = "smft"

    @property
    def facts(self) -> str:
        return f"{self.ns}:facts"

    @property
    def group(self) -> str:
        return f"{self.ns}:learners"

    def fact(self, fact_id: str) -> str:
        return f"{self.ns}:fact:{fact_id}"

    def client(self, client_id: str) -> str:
        return f"{self.ns}:client:{client_id}"

    @property
    def deltas(self) -> str:
        return f"{self.ns}:deltas"

    @property
    def version(self) -> str:
        return f"{self.ns}:version"

    @property
    def snapshot(self) -> str:
        return f"{self.ns}:snapshot"

    @property
    def lease(self) -> str:
        return f"{self.ns}:lease"

    @property
    def deadletter(self) -> str:
        return f"{self.ns}:deadletter"

    def rate(self, client: str) -> str:
        return f"{self.ns}:rate:{client}"

    @property
    def monitor_baseline(self) -> str:
        return f"{self.ns}:monitor:baseline"

    @property
    def monitor_history(self) -> str:
        return f"{self.ns}:monitor:history"

    @property
    def monitor_requested(self) -> str:
        return f"{self.ns}:monitor:requested"


def delta_entry_id(version: int) -> str:
    return f"{version}-1"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def version_of_entry(entry_id: bytes | str) -> int:
    return int(_text(entry_id).split("-")[0])


def fact_to_json(fact: Fact) -> str:
    return json.dumps({"text": fact.text, "paraphrases": list(fact.paraphrases),
                       "question": fact.question, "answer": fact.answer})


def fact_from_record(fact_id: str, record: dict[bytes, bytes]) -> Fact:
    data = json.loads(record[b"fact"])
    return Fact(text=data["text"], paraphrases=tuple(data.get("paraphrases") or ()), question=data.get("question"),
                answer=data.get("answer"), fact_id=fact_id)


def decode_record(record: dict[bytes, bytes]) -> dict[str, Any]:
    return {k.decode(): v.decode() for k, v in record.items()}


# Enqueue one fact atomically, or return the fact id already stored for its client id.
_ENQUEUE = """
if ARGV[4] ~= '' then
  local existing = redis.call('GET', KEYS[3])
  if existing then return {0, existing} end
end
redis.call('HSET', KEYS[2], 'fact', ARGV[2], 'status', 'queued', 'submitted_at', ARGV[3], 'attempts', 0)
redis.call('XADD', KEYS[1], '*', 'fact_id', ARGV[1])
if ARGV[4] ~= '' then redis.call('SET', KEYS[3], ARGV[1]) end
return {1, ARGV[1]}
"""

# Publish a delta only while holding the lease and only as the next version; mark its facts
# learned and acknowledge their stream entries in the same atomic step.
# KEYS: lease, version, deltas, facts stream; ARGV: owner, version, delta, group, learned_at, n,
# then n x (fact key, stream entry id or '', steps), then m, then m x (fact key, entry id or '') undone
_PUBLISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('LEASE lost') end
local current = tonumber(redis.call('GET', KEYS[2]) or '-1')
if current + 1 ~= tonumber(ARGV[2]) then return redis.error_reply('VERSION expected ' .. (current + 1)) end
redis.call('XADD', KEYS[3], ARGV[2] .. '-1', 'delta', ARGV[3])
redis.call('SET', KEYS[2], ARGV[2])
local n = tonumber(ARGV[6])
for i = 0, n - 1 do
  local base = 7 + i * 3
  redis.call('HSET', ARGV[base], 'status', 'learned', 'version', ARGV[2], 'steps', ARGV[base + 2],
             'learned_at', ARGV[5])
  redis.call('HDEL', ARGV[base], 'reason')
  if ARGV[base + 1] ~= '' then redis.call('XACK', KEYS[4], ARGV[4], ARGV[base + 1]) end
end
local undone_at = 7 + n * 3
for i = 0, tonumber(ARGV[undone_at]) - 1 do
  local base = undone_at + 1 + i * 2
  redis.call('HSET', ARGV[base], 'status', 'undone', 'undone_version', ARGV[2], 'undone_at', ARGV[5])
  if ARGV[base + 1] ~= '' then redis.call('XACK', KEYS[4], ARGV[4], ARGV[base + 1]) end
end
return current + 1
"""

# Ask for a fact to be taken back: once, and only for a fact that may still be (or become) learned.
# KEYS: fact key, facts stream; ARGV: fact id, requested_at. Returns the status (or 'missing').
_REQUEST_UNDO = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
if status == 'failed' or status == 'undone' then return status end
if redis.call('HEXISTS', KEYS[1], 'undo_requested') == 0 then
  redis.call('HSET', KEYS[1], 'undo_requested', ARGV[2])
  redis.call('XADD', KEYS[2], '*', 'fact_id', ARGV[1], 'kind', 'undo')
end
return status
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class Protocol:
    """Typed operations on the contract above; both the API and the worker use it."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.r, self.keys = client, keys
        self._enqueue = client.register_script(_ENQUEUE)
        self._publish = client.register_script(_PUBLISH)
        self._renew = client.register_script(_RENEW)
        self._request_undo = client.register_script(_REQUEST_UNDO)

    def ensure_group(self) -> None:
        try:
            self.r.xgroup_create(self.keys.facts, self.keys.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # --- API side -------------------------------------------------------------------------------
    def enqueue(self, fact: Fact, client_id: str | None = None) -> tuple[str, bool]:
        """Store and queue a fact; returns (fact id, created). Idempotent per client id."""
        fact_id = uuid.uuid4().hex
        created, stored_id = self._enqueue(
            keys=[self.keys.facts, self.keys.fact(fact_id), self.keys.client(client_id or "")],
            args=[fact_id, fact_to_json(fact), f"{time.time():.3f}", client_id or ""],
        )
        return _text(stored_id), bool(created)

    def fact_record(self, fact_id: str) -> dict[str, Any] | None:
        record = self.r.hgetall(self.keys.fact(fact_id))
        return decode_record(record) if record else None

    def request_undo(self, fact_id: str) -> str | None:
        """Queue taking back a fact; returns its status then, or None for an unknown id. Idempotent."""
        status = self._request_undo(keys=[self.keys.fact(fact_id), self.keys.facts],
                                    args=[fact_id, f"{time.time():.3f}"])
        status = _text(status)
        return None if status == "missing" else status

    def published_version(self) -> int:
        v = self.r.get(self.keys.version)
        return int(v) if v is not None else -1

    def snapshot_version(self) -> int | None:
        v = self.r.get(self.keys.snapshot)
        return int(v) if v is not None else None

    def _group_info(self) -> dict | None:
        try:
            groups = self.r.xinfo_groups(self.keys.facts)
        except redis.ResponseError:  # no stream yet
            return None
        return next((g for g in groups if g["name"] in (self.keys.group, self.keys.group.encode())), None)

    def queue_depth(self) -> int:
        """Facts not yet acknowledged: waiting in the stream plus pending with a worker."""
        group = self._group_info()
        return int(group.get("lag") or 0) + int(group.get("pending") or 0) if group else 0

    def queue_age_s(self) -> float:
        """How long the oldest entry not yet acknowledged has waited (0 when none): the queue's lag in time.

        Stream ids begin with the Redis clock in ms at XADD, so the age needs no stored timestamps.
        """
        group = self._group_info()
        if group is None:
            return 0.0
        oldest = []
        if int(group.get("pending") or 0):
            oldest.append(self.r.xpending(self.keys.facts, self.keys.group)["min"])
        waiting = self.r.xrange(self.keys.facts, min=f"({_text(group['last-delivered-id'])}", count=1)
        if waiting:
            oldest.append(waiting[0][0])
        if not oldest:
            return 0.0
        seconds, micros = self.r.time()
        first_ms = min(version_of_entry(entry_id) for entry_id in oldest)  # the id's ms part
        return max(0.0, seconds + micros / 1e6 - first_ms / 1000)

    # --- worker side ----------------------------------------------------------------------------
    def acquire_lease(self, owner: str, ttl_s: float) -> bool:
        return bool(self.r.set(self.keys.lease, owner, nx=True, px=int(ttl_s * 1000)))

    def renew_lease(self, owner: str, ttl_s: float) -> bool:
        return bool(self._renew(keys=[self.keys.lease], args=[owner, int(ttl_s * 1000)]))

    def release_lease(self, owner: str) -> None:
        self._renew(keys=[self.keys.lease], args=[owner, 1])

    def publish(self, owner: str, version: int, delta: bytes, learned: list[tuple[str, str, int]],
                undone: list[tuple[str, str]] = ()) -> int:
        """learned: (fact id, stream entry id or '', steps) for each fact the delta teaches;
        undone: (fact id, stream entry id or '') for each fact it takes back."""
        args: list[Any] = [owner, version, delta, self.keys.group, f"{time.time():.3f}", len(learned)]
        for fact_id, entry_id, steps in learned:
            args += [self.keys.fact(fact_id), entry_id, steps]
        args.append(len(undone))
        for fact_id, entry_id in undone:
            args += [self.keys.fact(fact_id), entry_id]
        keys = [self.keys.lease, self.keys.version, self.keys.deltas, self.keys.facts]
        return int(self._publish(keys=keys, args=args))

    def set_status(self, fact_id: str, status: FactStatus, **fields: Any) -> None:
        self.r.hset(self.keys.fact(fact_id), mapping={"status": status.value, **{k: str(v) for k, v in fields.items()}})

    def mark_undone(self, fact_id: str, entry_id: str) -> None:
        """A fact taken back before any version taught it: no delta, just the status and the ack."""
        pipe = self.r.pipeline(transaction=True)
        undone = {"status": FactStatus.undone.value, "undone_at": f"{time.time():.3f}"}
        pipe.hset(self.keys.fact(fact_id), mapping=undone)
        pipe.xack(self.keys.facts, self.keys.group, entry_id)
        pipe.execute()

    def dead_letter(self, fact_id: str, entry_id: str, reason: str) -> None:
        record = json.dumps({"fact_id": fact_id, "reason": reason, "at": time.time()})
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.keys.fact(fact_id), mapping={"status": FactStatus.failed.value, "reason": reason})
        pipe.rpush(self.keys.deadletter, record)
        pipe.xack(self.keys.facts, self.keys.group, entry_id)
        pipe.execute()

    def deltas_after(self, version: int, count: int | None = None) -> list[tuple[int, bytes]]:
        lowest = f"({delta_entry_id(version)}" if version >= 0 else "-"
        entries = self.r.xrange(self.keys.deltas, min=lowest, count=count)
        return [(version_of_entry(eid), fields[b"delta"]) for eid, fields in entries]

    def set_snapshot(self, version: int) -> None:
        # Only move forward: a slow writer must not point readers at an older snapshot.
        self.r.eval("local v = tonumber(redis.call('GET', KEYS[1]) or '-1') "
                    "if tonumber(ARGV[1]) > v then redis.call('SET', KEYS[1], ARGV[1]) end return 1",
                    1, self.keys.snapshot, version)

    def trim_deltas_through(self, version: int) -> None:
        """Drop deltas with version <= `version` (they are inside a snapshot on disk)."""
        self.r.xtrim(self.keys.deltas, minid=delta_entry_id(version + 1), approximate=False)
