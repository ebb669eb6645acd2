"""The one door to Redis: key names, fact records, atomic scripts, and every call the API and the
worker make (nothing else in `worker/` or `service/` imports `redis`).

- `{ns}:facts`          stream of work, read by the consumer group `{ns}:learners`: `fact_id` (teach it)
                        or `fact_id` with `kind=undo` (take back what it taught)
- `{ns}:fact:{id}`      hash: the fact (JSON) and its status
- `{ns}:client:{cid}`   fact id for a client-supplied idempotency id
- `{ns}:document:{id}`  hash: a document's title and the ids of the facts it was split into
- `{ns}:document-client:{cid}`  document id for a client-supplied idempotency id
- `{ns}:deltas`         stream of memory deltas; entry id "{version}-1", field `delta` (safetensors bytes)
- `{ns}:deployment`     this deployment's id, drawn when version 0 is published: its files live under
                        `<data>/snapshots/<id>/` and `<data>/journal/<id>/`, and every delta carries it,
                        so a flushed or replaced Redis, or two namespaces on one data directory, never mix
                        (absent on deployments made before it: their files sit directly in those folders)
- `{ns}:version`        newest published version
- `{ns}:snapshot`       newest snapshot version on disk, and `{ns}:snapshot-file` its file (relative to the
                        snapshots folder; absent before deployment ids: `v<version>.safetensors`)
- `{ns}:journal`        hash: version -> its undo record's file (relative to the journal folder)
- `{ns}:lease`          leader lease (owner id, with a TTL); every write the leader makes checks it
- `{ns}:deadletter`     list of JSON records of facts that failed too often
- `{ns}:monitor:*`      forgetting monitor: version-0 baseline, history, on-demand request flag
- `{ns}:rate:{client}`  teaching rate limit of one client (token bucket, shared by every API replica)

Clients get connect and socket timeouts, so a Redis that stops answering raises (one of
`UNAVAILABLE`) instead of freezing the caller.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from typing import Any

import redis

from model.facts import Fact
from worker.errors import ClientIdConflict, LeadershipLost, PublishRefused

# What a caller catches for "Redis is away" (restarting, unreachable, not answering in time); nothing
# was stored when one of these is raised by a write.
# Out of memory (maxmemory with noeviction) refuses a write before it runs: nothing stored, retry later.
UNAVAILABLE: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError, redis.OutOfMemoryError)
# How long a connection attempt and a reply may take; blocking reads ask for at most ~1 s less.
CONNECT_TIMEOUT_S, SOCKET_TIMEOUT_S = 5.0, 10.0
CLIENT_ID_TTL_S = 7 * 24 * 3600  # how long a client id names its fact: retries come within minutes
DEAD_LETTERS_KEPT = 10_000  # the newest; older ones stay readable on their facts (status failed, reason)


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

    def document(self, document_id: str) -> str:
        return f"{self.ns}:document:{document_id}"

    def document_client(self, client_id: str) -> str:
        return f"{self.ns}:document-client:{client_id}"

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
    def snapshot_file(self) -> str:
        return f"{self.ns}:snapshot-file"

    @property
    def deployment(self) -> str:
        return f"{self.ns}:deployment"

    @property
    def journal(self) -> str:
        return f"{self.ns}:journal"

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


@contextmanager
def _script_refused_as(error: type[Exception], what: str) -> Iterator[None]:
    """A fenced script's refusal (a lost lease, a version out of turn) as `error`; Redis out of memory stays
    itself: nothing was written, and the worker waits for Redis as when it is away (UNAVAILABLE)."""
    try:
        yield
    except redis.OutOfMemoryError:
        raise
    except redis.ResponseError as exc:
        raise error(f"{what}: {exc}") from exc


def delta_entry_id(version: int) -> str:
    return f"{version}-1"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _stream_id(entry_id: bytes | str) -> tuple[int, int]:
    ms, _, seq = _text(entry_id).partition("-")
    return int(ms), int(seq or 0)


def version_of_entry(entry_id: bytes | str) -> int:
    return int(_text(entry_id).split("-")[0])


@dataclass(frozen=True)
class DocumentPost:
    """A document whose statements are enqueued as facts (see model/documents.py)."""

    title: str
    chars: int
    digest: str  # of title and text: the same client id with other content is a conflict
    client_id: str | None = None


@dataclass(frozen=True)
class Enqueued:
    fact_ids: list[str]
    created: list[bool]  # False: a client id named a fact already accepted (a retry)
    document_id: str | None = None
    document_created: bool = False


def fact_to_json(fact: Fact) -> str:
    return json.dumps({"text": fact.text, "paraphrases": list(fact.paraphrases),
                       "question": fact.question, "answer": fact.answer})


def fact_from_record(fact_id: str, record: dict[str, str]) -> Fact:
    data = json.loads(record["fact"])
    return Fact(text=data["text"], paraphrases=tuple(data.get("paraphrases") or ()), question=data.get("question"),
                answer=data.get("answer"), fact_id=fact_id)


def decode_record(record: dict[bytes, bytes]) -> dict[str, Any]:
    return {k.decode(): v.decode() for k, v in record.items()}


# Store and queue a list of facts (and the document they came from) in one step: all or nothing.
# A client id already bound to the same fact returns that fact (a retry); bound to different
# content it refuses the whole request; bound to a fact since undone it is bound to the new one.
# Client ids expire after a TTL (a retry comes within minutes; the keys must not grow forever).
# KEYS: facts stream, document key, document's client key, then per fact: fact key, client key
# ARGV: submitted_at, fact key prefix, n, client id TTL (s), document id ('' for none), document (JSON),
#       document client id, document digest, document key prefix, then per fact: fact id, fact (JSON),
#       client id ('' for none), the id of the fact it replaces ('' for none)
# Returns {document id, created, fact id, created, fact id, ...}; errors 'CONFLICT <index>' (-1: the
# document).
_ENQUEUE = """
local submitted_at, fact_prefix, n, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local doc_id, doc_json, doc_client, doc_digest, doc_prefix = ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local FIRST = 10
if doc_client ~= '' then
  local existing = redis.call('GET', KEYS[3])
  if existing then
    local fields = redis.call('HMGET', doc_prefix .. existing, 'digest', 'fact_ids')
    if fields[1] ~= doc_digest then return redis.error_reply('CONFLICT -1') end
    local out = {existing, 0}
    for _, id in ipairs(cjson.decode(fields[2])) do out[#out + 1] = id; out[#out + 1] = 0 end
    return out
  end
end
local ids, created = {}, {}
for i = 0, n - 1 do
  local base = FIRST + i * 4
  ids[i + 1], created[i + 1] = ARGV[base], 1
  if ARGV[base + 2] ~= '' then
    local existing = redis.call('GET', KEYS[5 + i * 2])
    if existing then
      local fields = redis.call('HMGET', fact_prefix .. existing, 'fact', 'status')
      if fields[2] and fields[2] ~= 'undone' then
        if fields[1] ~= ARGV[base + 1] then return redis.error_reply('CONFLICT ' .. i) end
        ids[i + 1], created[i + 1] = existing, 0
      end
    end
  end
end
local out = {doc_id, doc_id ~= '' and 1 or 0}
for i = 0, n - 1 do
  local base = FIRST + i * 4
  local key = KEYS[4 + i * 2]
  if created[i + 1] == 1 then
    redis.call('HSET', key, 'fact', ARGV[base + 1], 'status', 'queued', 'submitted_at', submitted_at, 'attempts', 0)
    if doc_id ~= '' then redis.call('HSET', key, 'document', doc_id) end
    if ARGV[base + 3] ~= '' then redis.call('HSET', key, 'replaces', ARGV[base + 3]) end
    redis.call('XADD', KEYS[1], '*', 'fact_id', ARGV[base])
    if ARGV[base + 2] ~= '' then redis.call('SET', KEYS[5 + i * 2], ARGV[base], 'EX', ttl) end
  end
  out[#out + 1] = ids[i + 1]
  out[#out + 1] = created[i + 1]
end
if doc_id ~= '' then
  redis.call('HSET', KEYS[2], 'document', doc_json, 'fact_ids', cjson.encode(ids), 'digest', doc_digest,
             'submitted_at', submitted_at)
  if doc_client ~= '' then redis.call('SET', KEYS[3], doc_id, 'EX', ttl) end
end
return out
"""

# Publish a delta only while holding the lease and only as the next version; mark its facts
# learned and acknowledge their stream entries in the same atomic step.
# The undo record's file is named in the same step, so a record written by a deposed leader (under its own
# unique name) is never the one an undo reads.
# KEYS: lease, version, deltas, facts stream, journal, deployment; ARGV: owner, version, delta, group,
# learned_at, journal file, deployment, record TTL in s (0: kept), n, then n x (fact key, stream entry id or
# '', steps), then m, then m x (fact key, entry id or '', id of the fact that replaces it or '') undone
_PUBLISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('LEASE lost') end
if (redis.call('GET', KEYS[6]) or '') ~= ARGV[7] then return redis.error_reply('DEPLOYMENT changed') end
local current = tonumber(redis.call('GET', KEYS[2]) or '-1')
if current + 1 ~= tonumber(ARGV[2]) then return redis.error_reply('VERSION expected ' .. (current + 1)) end
redis.call('XADD', KEYS[3], ARGV[2] .. '-1', 'delta', ARGV[3])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[5], ARGV[2], ARGV[6])
local ttl = tonumber(ARGV[8])
local n = tonumber(ARGV[9])
for i = 0, n - 1 do
  local base = 10 + i * 3
  redis.call('HSET', ARGV[base], 'status', 'learned', 'version', ARGV[2], 'steps', ARGV[base + 2],
             'learned_at', ARGV[5])
  redis.call('HDEL', ARGV[base], 'reason')
  if ttl > 0 then redis.call('EXPIRE', ARGV[base], ttl) end
  if ARGV[base + 1] ~= '' then redis.call('XACK', KEYS[4], ARGV[4], ARGV[base + 1]) end
end
local undone_at = 10 + n * 3
for i = 0, tonumber(ARGV[undone_at]) - 1 do
  local base = undone_at + 1 + i * 3
  redis.call('HSET', ARGV[base], 'status', 'undone', 'undone_version', ARGV[2], 'undone_at', ARGV[5])
  if ARGV[base + 2] ~= '' then redis.call('HSET', ARGV[base], 'replaced_by', ARGV[base + 2]) end
  if ttl > 0 then redis.call('EXPIRE', ARGV[base], ttl) end
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

# Token bucket of one client's teaching rate, on Redis' clock so replicas on different machines agree.
# KEYS: bucket; ARGV: tokens per second, burst, cost. Returns {allowed, milliseconds until it would be}.
_TAKE_TOKENS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) / 1000 * rate)
local allowed = 0
local wait = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  wait = math.ceil((cost - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, wait}
"""

# Move the snapshot pointer (version and file) only forward, and only for the leader of this deployment
# (owner '' for no check): a slow or deposed writer must not point readers at an older or foreign snapshot.
# KEYS: snapshot, snapshot file, lease, deployment; ARGV: version, file, owner, deployment
_SET_SNAPSHOT = """
if ARGV[3] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[3] then return redis.error_reply('LEASE lost') end
if (redis.call('GET', KEYS[4]) or '') ~= ARGV[4] then return redis.error_reply('DEPLOYMENT changed') end
local v = tonumber(redis.call('GET', KEYS[1]) or '-1')
if tonumber(ARGV[1]) > v then
  redis.call('SET', KEYS[1], ARGV[1])
  if ARGV[2] ~= '' then redis.call('SET', KEYS[2], ARGV[2]) end
end
return 1
"""

# A new deployment: its id, version 0 and its snapshot, in one step, only where Redis holds no version yet.
# KEYS: deployment, version, snapshot, snapshot file; ARGV: id, snapshot file. Returns 1, or 0 if one exists.
_BEGIN_DEPLOYMENT = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], 0)
redis.call('SET', KEYS[3], 0)
redis.call('SET', KEYS[4], ARGV[2])
return 1
"""

# Commands run only while `owner` holds the lease (owner '' for no check), all in one atomic step: how a
# leader's writes are fenced, so one paused past its lease (a VM stall) changes nothing when it resumes.
# KEYS: lease; ARGV: owner, then per command: its word count, then its words.
_FENCED = """
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('LEASE lost') end
local out, i = {}, 2
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  out[#out + 1] = redis.call(unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
return out
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class RedisStore:
    """Typed operations on the contract above; both the API and the worker use it."""

    def __init__(self, client: redis.Redis, keys: Keys, fence: str = "", record_ttl_s: int = 0) -> None:
        self._r, self.keys = client, keys
        self.fence = fence  # the lease owner every leader write is checked against ('' for none)
        self.record_ttl_s = record_ttl_s  # how long a fact's record stays once it is final (0: for ever)
        self._fenced = client.register_script(_FENCED)
        self._begin_deployment = client.register_script(_BEGIN_DEPLOYMENT)
        self._enqueue = client.register_script(_ENQUEUE)
        self._publish = client.register_script(_PUBLISH)
        self._renew = client.register_script(_RENEW)
        self._request_undo = client.register_script(_REQUEST_UNDO)
        self._take_tokens = client.register_script(_TAKE_TOKENS)
        self._set_snapshot = client.register_script(_SET_SNAPSHOT)

    @classmethod
    def connect(cls, url: str, namespace: str = "smft") -> RedisStore:
        client = redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_S,
                                      socket_timeout=SOCKET_TIMEOUT_S, health_check_interval=30)
        return cls(client, Keys(namespace))

    def fenced(self, owner: str, record_ttl_s: int = 0) -> RedisStore:
        """This store (the same connection) for a leader: each of its writes to the queue, the facts' statuses,
        attempts, dead letters and the snapshot pointer happens only while `owner` holds the lease, and
        raises LeadershipLost otherwise. Records of facts it finishes expire after `record_ttl_s` (0: never)."""
        return RedisStore(self._r, self.keys, fence=owner, record_ttl_s=record_ttl_s)

    def _expiry(self, fact_id: str) -> list[tuple[Any, ...]]:
        """The command that lets a finished fact's record expire, if records expire."""
        return [("EXPIRE", self.keys.fact(fact_id), self.record_ttl_s)] if self.record_ttl_s > 0 else []

    def _write(self, *commands: Sequence[Any]) -> list[Any]:
        """Run the commands in one atomic step, fenced by the lease when this store is a leader's."""
        args: list[Any] = [self.fence]
        for command in commands:
            args += [len(command), *command]
        try:
            return self._fenced(keys=[self.keys.lease], args=args)
        except redis.ResponseError as exc:
            if "LEASE lost" in str(exc):
                raise LeadershipLost(f"{self.fence} no longer holds the lease: write refused") from exc
            raise

    def close(self) -> None:
        self._r.close()

    def ping(self) -> None:
        self._r.ping()

    def ensure_group(self) -> None:
        try:
            self._r.xgroup_create(self.keys.facts, self.keys.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # --- facts: the API side --------------------------------------------------------------------
    def enqueue(self, fact: Fact, client_id: str | None = None) -> tuple[str, bool]:
        """Store and queue one fact; returns (fact id, created). Idempotent per client id."""
        done = self.enqueue_many([fact], [client_id])
        return done.fact_ids[0], done.created[0]

    def enqueue_many(self, facts: Sequence[Fact], client_ids: Sequence[str | None] | None = None,
                     document: DocumentPost | None = None, replaces: Sequence[str | None] | None = None,
                     client_id_ttl_s: int = CLIENT_ID_TTL_S) -> Enqueued:
        """Store and queue facts (from `document`, if given) in one atomic step: all of them or none.
        `replaces[i]` names a fact that fact i corrects: the worker takes it back in the version that
        teaches fact i.

        Raises ClientIdConflict when a client id names other content; nothing is stored then.
        """
        client_ids = list(client_ids) if client_ids is not None else [None] * len(facts)
        replaces = list(replaces) if replaces is not None else [None] * len(facts)
        document_id = uuid.uuid4().hex if document else ""
        doc_client = (document.client_id or "") if document else ""
        keys = [self.keys.facts, self.keys.document(document_id) if document else "",
                self.keys.document_client(doc_client) if doc_client else ""]
        args: list[Any] = [f"{time.time():.3f}", self.keys.fact(""), len(facts), client_id_ttl_s, document_id,
                           json.dumps({"title": document.title, "chars": document.chars}) if document else "",
                           doc_client, document.digest if document else "", self.keys.document("")]
        for fact, client_id, old in zip(facts, client_ids, replaces, strict=True):
            fact_id = uuid.uuid4().hex
            keys += [self.keys.fact(fact_id), self.keys.client(client_id) if client_id else ""]
            args += [fact_id, fact_to_json(fact), client_id or "", old or ""]
        try:
            out = [_text(x) if isinstance(x, bytes) else x for x in self._enqueue(keys=keys, args=args)]
        except redis.ResponseError as exc:
            if not str(exc).startswith("CONFLICT"):
                raise
            index = int(str(exc).split()[1])
            what = "the document's client_id" if index < 0 else f"client_id {client_ids[index]!r}"
            raise ClientIdConflict(index, f"{what} was used before for other content") from exc
        pairs = list(zip(out[2::2], out[3::2], strict=True))
        return Enqueued([fid for fid, _ in pairs], [bool(c) for _, c in pairs], out[0] or None, bool(out[1]))

    def fact_records(self, fact_ids: Sequence[str]) -> list[dict[str, str] | None]:
        """Many facts' records in one round trip (None for an unknown id)."""
        pipe = self._r.pipeline(transaction=False)
        for fact_id in fact_ids:
            pipe.hgetall(self.keys.fact(fact_id))
        return [decode_record(r) if r else None for r in pipe.execute()]

    def fact_texts(self, fact_ids: Sequence[str]) -> list[str | None]:
        """Many facts' statements in one round trip (None for an unknown id)."""
        return [statements[0] if statements else None for statements in self.fact_statements(fact_ids)]

    def fact_statements(self, fact_ids: Sequence[str]) -> list[tuple[str, ...] | None]:
        """Many facts' statements, each its text and then its paraphrases, in one round trip (None: unknown id)."""
        out: list[tuple[str, ...] | None] = []
        for record in self.fact_records(fact_ids):
            fact = json.loads(record["fact"]) if record and "fact" in record else None
            out.append((fact["text"], *(fact.get("paraphrases") or ())) if fact is not None else None)
        return out

    def document_record(self, document_id: str) -> dict[str, Any] | None:
        """A document's title, size, submission time and fact ids, or None for an unknown id."""
        record = self._r.hgetall(self.keys.document(document_id))
        if not record:
            return None
        record = decode_record(record)
        return {**json.loads(record["document"]), "fact_ids": json.loads(record["fact_ids"]),
                "submitted_at": float(record["submitted_at"])}

    def fact_record(self, fact_id: str) -> dict[str, str] | None:
        record = self._r.hgetall(self.keys.fact(fact_id))
        return decode_record(record) if record else None

    def request_undo(self, fact_id: str) -> str | None:
        """Queue taking back a fact; returns its status then, or None for an unknown id. Idempotent."""
        status = self._request_undo(keys=[self.keys.fact(fact_id), self.keys.facts],
                                    args=[fact_id, f"{time.time():.3f}"])
        status = _text(status)
        return None if status == "missing" else status

    def take_tokens(self, client: str, per_s: float, burst: int, cost: int) -> tuple[bool, int]:
        """Take `cost` tokens from a client's bucket: (allowed, milliseconds until they would be)."""
        allowed, wait_ms = self._take_tokens(keys=[self.keys.rate(client)], args=[per_s, burst, cost])
        return bool(allowed), int(wait_ms)

    # --- versions, queue and status -------------------------------------------------------------
    def published_version(self) -> int:
        v = self._r.get(self.keys.version)
        return int(v) if v is not None else -1

    def snapshot_version(self) -> int | None:
        v = self._r.get(self.keys.snapshot)
        return int(v) if v is not None else None

    def _group_info(self) -> dict | None:
        try:
            groups = self._r.xinfo_groups(self.keys.facts)
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
            oldest.append(self._r.xpending(self.keys.facts, self.keys.group)["min"])
        waiting = self._r.xrange(self.keys.facts, min=f"({_text(group['last-delivered-id'])}", count=1)
        if waiting:
            oldest.append(waiting[0][0])
        if not oldest:
            return 0.0
        seconds, micros = self._r.time()
        first_ms = min(version_of_entry(entry_id) for entry_id in oldest)  # the id's ms part
        return max(0.0, seconds + micros / 1e6 - first_ms / 1000)

    def dead_letter_count(self) -> int:
        return int(self._r.llen(self.keys.deadletter))

    # --- deltas and snapshots -------------------------------------------------------------------
    def deltas_after(self, version: int, count: int | None = None) -> list[tuple[int, bytes]]:
        lowest = f"({delta_entry_id(version)}" if version >= 0 else "-"
        entries = self._r.xrange(self.keys.deltas, min=lowest, count=count)
        return [(version_of_entry(eid), fields[b"delta"]) for eid, fields in entries]

    def wait_for_deltas(self, after_version: int, block_ms: int = 1000, count: int = 64) -> list[tuple[int, bytes]]:
        """Deltas after `after_version`, blocking up to `block_ms` for the next one (no polling delay)."""
        got = self._r.xread({self.keys.deltas: delta_entry_id(after_version)}, block=block_ms, count=count)
        return [(version_of_entry(eid), fields[b"delta"]) for _, entries in got or [] for eid, fields in entries]

    def init_version(self) -> None:
        """Version 0 is published, in a deployment without an id (as made before ids; for tests that place
        a version-0 snapshot by hand). A later call changes nothing."""
        self._r.set(self.keys.version, 0, nx=True)

    def begin_deployment(self, deployment: str, snapshot_file: str) -> bool:
        """Publish version 0 of a new deployment with its snapshot, unless Redis already holds a version."""
        keys = [self.keys.deployment, self.keys.version, self.keys.snapshot, self.keys.snapshot_file]
        return bool(self._begin_deployment(keys=keys, args=[deployment, snapshot_file]))

    def deployment(self) -> str | None:
        """This deployment's id: '' for one made before ids, None when Redis holds no deployment at all."""
        return self.deployment_and_version()[0]

    def deployment_and_version(self) -> tuple[str | None, int]:
        """(deployment id as `deployment()` gives it, published version or -1), read in one step."""
        deployment, version = self._r.mget(self.keys.deployment, self.keys.version)
        published = int(version) if version is not None else -1
        if deployment is not None:
            return _text(deployment), published
        return ("" if version is not None else None), published

    def snapshot_pointer(self) -> tuple[int, str, str] | None:
        """(version, file relative to the snapshots folder or '' for the pre-id name, deployment) of the
        newest snapshot, read in one step; None before version 0 is published."""
        version, file, deployment = self._r.mget(self.keys.snapshot, self.keys.snapshot_file, self.keys.deployment)
        if version is None:
            return None
        return int(version), _text(file) if file is not None else "", _text(deployment) if deployment else ""

    def set_snapshot(self, version: int, file: str = "", deployment: str = "") -> None:
        """Point readers at a newer snapshot (fenced by the lease on a leader's store)."""
        keys = [self.keys.snapshot, self.keys.snapshot_file, self.keys.lease, self.keys.deployment]
        with _script_refused_as(LeadershipLost, f"snapshot v{version} not published"):
            self._set_snapshot(keys=keys, args=[version, file, self.fence, deployment])

    def journal_file(self, version: int) -> str | None:
        """The undo record of a published version (relative to the journal folder), if Redis names one."""
        name = self._r.hget(self.keys.journal, version)
        return _text(name) if name is not None else None

    def journal_files(self) -> dict[int, str]:
        """Every undo record Redis names: version -> file relative to the journal folder (one HGETALL)."""
        return {int(v): _text(name) for v, name in self._r.hgetall(self.keys.journal).items()}

    def forget_journal(self, versions: Sequence[int]) -> None:
        """Versions whose undo records were pruned."""
        if versions:
            self._write(("HDEL", self.keys.journal, *versions))

    def trim_facts_stream(self) -> int:
        """Drop the stream entries every learner is done with (the facts' records stay); returns how many.

        Entries after the group's last delivered one are waiting, and pending ones are being worked on:
        everything before the oldest of those goes."""
        group = self._group_info()
        if group is None:
            return 0
        keep_from = _stream_id(group["last-delivered-id"])
        if int(group.get("pending") or 0):
            keep_from = min(keep_from, _stream_id(self._r.xpending(self.keys.facts, self.keys.group)["min"]))
        return int(self._r.xtrim(self.keys.facts, minid=f"{keep_from[0]}-{keep_from[1]}", approximate=False))

    def trim_deltas_through(self, version: int) -> None:
        """Drop deltas with version <= `version` (they are inside a snapshot on disk)."""
        self._r.xtrim(self.keys.deltas, minid=delta_entry_id(version + 1), approximate=False)

    # --- the worker: lease, claims, publishing --------------------------------------------------
    def acquire_lease(self, owner: str, ttl_s: float) -> bool:
        return bool(self._r.set(self.keys.lease, owner, nx=True, px=int(ttl_s * 1000)))

    def renew_lease(self, owner: str, ttl_s: float) -> bool:
        return bool(self._renew(keys=[self.keys.lease], args=[owner, int(ttl_s * 1000)]))

    def lease_holder(self) -> str | None:
        """The worker that holds the lease now, or None."""
        owner = self._r.get(self.keys.lease)
        return None if owner is None else _text(owner)

    def release_lease(self, owner: str) -> None:
        self._renew(keys=[self.keys.lease], args=[owner, 1])

    def claim(self, consumer: str, count: int, block_ms: int | None) -> list[tuple[str, dict[str, str]]]:
        """Up to `count` stream entries: first any left pending (by us or a dead leader), then new ones,
        blocking up to `block_ms` for new ones when none is pending (None: do not block)."""
        keys = self.keys
        try:
            _, pending, _ = self._r.xautoclaim(keys.facts, keys.group, consumer, min_idle_time=0, start_id="0-0",
                                               count=count)
            entries = [(eid, fields) for eid, fields in pending if fields]
            if len(entries) < count:
                got = self._r.xreadgroup(keys.group, consumer, {keys.facts: ">"}, count=count - len(entries),
                                         block=block_ms if not entries else None)
                for _, stream_entries in got or []:
                    entries.extend(stream_entries)
        except redis.ResponseError as exc:
            if "NOGROUP" in str(exc) or "no longer exists" in str(exc):  # Redis flushed under us: resynchronise
                raise LeadershipLost(f"the facts stream is gone: {exc}") from exc
            raise
        return [(_text(eid), decode_record(fields)) for eid, fields in entries]

    def ack(self, entry_id: str) -> None:
        self._write(("XACK", self.keys.facts, self.keys.group, entry_id))

    def count_attempt(self, fact_id: str, field: str = "attempts") -> int:
        """One more attempt at a fact (or at its undo, field `undo_attempts`); returns the count."""
        return int(self._write(("HINCRBY", self.keys.fact(fact_id), field, 1))[0])

    def give_up_undo(self, fact_id: str, entry_id: str, reason: str) -> None:
        """An undo that cannot be done: say why on the fact, and drop its entry."""
        self._write(("HSET", self.keys.fact(fact_id), "reason", reason),
                    ("XACK", self.keys.facts, self.keys.group, entry_id))

    def publish(self, owner: str, version: int, delta: bytes, learned: list[tuple[str, str, int]],
                undone: Sequence[tuple[str, str, str]] = (), journal_file: str = "", deployment: str = "") -> int:
        """learned: (fact id, stream entry id or '', steps) for each fact the delta teaches;
        undone: (fact id, stream entry id or '', id of the fact replacing it or '') for each fact it takes back;
        journal_file: the version's undo record, relative to the journal folder.

        Raises PublishRefused when the lease is not ours, the deployment is not `deployment` (Redis was
        flushed or replaced), or the version is not the next one.
        """
        args: list[Any] = [owner, version, delta, self.keys.group, f"{time.time():.3f}", journal_file, deployment,
                           self.record_ttl_s, len(learned)]
        for fact_id, entry_id, steps in learned:
            args += [self.keys.fact(fact_id), entry_id, steps]
        args.append(len(undone))
        for fact_id, entry_id, replaced_by in undone:
            args += [self.keys.fact(fact_id), entry_id, replaced_by]
        keys = [self.keys.lease, self.keys.version, self.keys.deltas, self.keys.facts, self.keys.journal,
                self.keys.deployment]
        with _script_refused_as(PublishRefused, f"publish of v{version} refused"):
            return int(self._publish(keys=keys, args=args))

    def set_status(self, fact_id: str, status: FactStatus, **fields: Any) -> None:
        words = [w for k, v in {"status": status.value, **fields}.items() for w in (k, str(v))]
        self._write(("HSET", self.keys.fact(fact_id), *words))

    def set_reason(self, fact_id: str, reason: str) -> None:
        """Say on a fact why something asked of it did not happen (its status stays)."""
        self._write(("HSET", self.keys.fact(fact_id), "reason", reason))

    def mark_undone(self, fact_id: str, entry_id: str) -> None:
        """A fact taken back before any version taught it: no delta, just the status and the ack."""
        self._write(("HSET", self.keys.fact(fact_id), "status", FactStatus.undone.value,
                     "undone_at", f"{time.time():.3f}"),
                    ("XACK", self.keys.facts, self.keys.group, entry_id), *self._expiry(fact_id))

    def dead_letter(self, fact_id: str, entry_id: str, reason: str) -> None:
        record = json.dumps({"fact_id": fact_id, "reason": reason, "at": time.time()})
        self._write(("HSET", self.keys.fact(fact_id), "status", FactStatus.failed.value, "reason", reason),
                    ("RPUSH", self.keys.deadletter, record),
                    ("LTRIM", self.keys.deadletter, -DEAD_LETTERS_KEPT, -1),  # bounded: each fact keeps its reason
                    ("XACK", self.keys.facts, self.keys.group, entry_id), *self._expiry(fact_id))

    # --- the forgetting monitor -----------------------------------------------------------------
    def monitor_baseline(self) -> dict | None:
        raw = self._r.get(self.keys.monitor_baseline)
        return json.loads(raw) if raw else None

    def set_monitor_baseline(self, body: dict) -> None:
        self._r.set(self.keys.monitor_baseline, json.dumps(body))

    def append_monitor_point(self, point: dict, keep: int) -> None:
        """Add an evaluation to the history, keeping the newest `keep`."""
        pipe = self._r.pipeline()
        pipe.rpush(self.keys.monitor_history, json.dumps(point))
        pipe.ltrim(self.keys.monitor_history, -keep, -1)
        pipe.execute()

    def monitor_history(self, limit: int) -> list[dict]:
        """The newest `limit` evaluations, oldest first."""
        return [json.loads(x) for x in self._r.lrange(self.keys.monitor_history, -limit, -1)]

    def request_evaluation(self) -> None:
        """Ask the worker for an evaluation at its next opportunity."""
        self._r.set(self.keys.monitor_requested, 1)

    def take_evaluation_request(self) -> bool:
        return bool(self._r.getdel(self.keys.monitor_requested))
