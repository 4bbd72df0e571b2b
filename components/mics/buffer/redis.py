"""The catch-up buffer in Redis, shared by the nodes of a cluster.

Keys (one tenant's all in its hash slot, see mics.cluster.redis):
- `{t}:seq:<user>`: the user's seq counter (kept a day after its last use);
- `{t}:inbox:<user>`: zset of held messages scored by seq; a member is
  `<expires_ms>:<size>:<msgpack entry without seq>`;
- `{t}:held`: zset of `<user>\\0<seq>\\0<size>` scored by expiry, tenant-wide, for expiry and the
  byte cap; `{t}:bytes`: bytes held; `{t}:epoch`: the stream's name;
- `{t}:dedup:<user>:<client_msg_id>`: a send's Ack, for the dedup window;
- `{t}:sent:<msg_id>`: the sender index (section 11), for recall_window_s: `flag\\0from\\0to\\0group\\0ts`
  then `\\0user\\0seq` for each held copy; flag `1` once recalled.

Each append is one script run, so seq allocation, holding and both caps are atomic across nodes.
When the tenant's byte cap is hit, the entry closest to expiry goes first (in memory: the oldest);
the per-user cap drops the user's oldest, as in memory.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack
from twisted.internet.defer import Deferred
from txaio import make_logger

from mics import metrics
from mics.buffer import SYNC_PAGE_BYTES, SYNC_PAGE_MESSAGES, CatchupBuffer, Sent, sync_result
from mics.buffer.memory import DEDUP_WINDOW_S
from mics.cluster.redis import Script, TenantKeys
from mics.types import SyncResult

log = make_logger()

SEQ_KEEP_MS = 86_400_000
EXPIRE_BATCH = 1000
APPEND_MANY_BATCH = 500
RECENT_PAGE = 100  # held entries read per round trip when looking for an agent's context
SINCE_BATCH = 32  # held entries a sync script reads at a time while filling its page

# Lua shared by the append scripts. Keys are built from the tenant prefix (one hash slot).
APPEND_LUA = """
local function ensure_epoch(key, candidate)
  local epoch = redis.call('GET', key)
  if not epoch then epoch = candidate; redis.call('SET', key, epoch) end
  return epoch
end
-- the user's next seq; held until `expires` (ms) unless it is '0'. Returns seq, evicted.
local function append(prefix, user, expires, size, packed, max_per_user, max_bytes, seq_keep, inbox_ttl)
  local seq_key, inbox = prefix .. 'seq:' .. user, prefix .. 'inbox:' .. user
  local held, bytes_key = prefix .. 'held', prefix .. 'bytes'
  local seq = redis.call('INCR', seq_key)
  redis.call('PEXPIRE', seq_key, seq_keep)
  if expires == '0' then return seq, 0 end
  redis.call('ZADD', inbox, seq, expires .. ':' .. size .. ':' .. packed)
  if redis.call('PTTL', inbox) < tonumber(inbox_ttl) then redis.call('PEXPIRE', inbox, inbox_ttl) end
  redis.call('ZADD', held, expires, user .. '\\0' .. seq .. '\\0' .. size)
  local bytes = redis.call('INCRBY', bytes_key, size)
  local evicted = 0
  while redis.call('ZCARD', inbox) > tonumber(max_per_user) do
    local head = redis.call('ZPOPMIN', inbox)
    local head_size = string.match(head[1], '^%d+:(%d+):')
    redis.call('ZREM', held, user .. '\\0' .. head[2] .. '\\0' .. head_size)
    bytes = redis.call('DECRBY', bytes_key, head_size)
    evicted = evicted + 1
  end
  while bytes > tonumber(max_bytes) do
    local oldest = redis.call('ZPOPMIN', held)
    if #oldest == 0 then break end
    local who, s, sz = string.match(oldest[1], '^(.*)%z(%d+)%z(%d+)$')
    redis.call('ZREMRANGEBYSCORE', prefix .. 'inbox:' .. who, s, s)
    bytes = redis.call('DECRBY', bytes_key, sz)
    evicted = evicted + 1
  end
  return seq, evicted
end
local function held_stats(prefix)
  return redis.call('ZCARD', prefix .. 'held'), tonumber(redis.call('GET', prefix .. 'bytes') or '0')
end
"""

# KEYS: epoch; ARGV: prefix, epoch candidate, user, expires, size, packed, max_per_user, max_bytes, seq_keep, inbox_ttl
_APPEND = Script(
    APPEND_LUA
    + """
local epoch = ensure_epoch(KEYS[1], ARGV[2])
local seq, evicted = append(ARGV[1], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10])
local held, bytes = held_stats(ARGV[1])
return {seq, evicted, epoch, held, bytes}
"""
)

# The same message for many users (group_buffering: a group's offline members), one script run.
# KEYS: epoch; ARGV: prefix, epoch candidate, expires, size, packed, max_per_user, max_bytes, seq_keep,
# inbox_ttl, then the user ids
_APPEND_MANY = Script(
    APPEND_LUA
    + """
local epoch = ensure_epoch(KEYS[1], ARGV[2])
local evicted, seqs = 0, {}
for i = 10, #ARGV do
  local seq, ev = append(ARGV[1], ARGV[i], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9])
  evicted = evicted + ev
  seqs[#seqs + 1] = seq
end
local held, bytes = held_stats(ARGV[1])
return {0, evicted, epoch, held, bytes, seqs}
"""
)

# One 1:1 inbox message in one round trip: both users' presence, the recipient's append (held for the
# online or the offline time), the sender's copy, and a publish to every other node with a device of
# either user ("S" frames, see mics.cluster.unpack_seq_frame).
# KEYS: epoch. ARGV: 1 prefix, 2 epoch candidate, 3 to, 4 from ('' = no copy), 5 expires if online,
# 6 expires if offline, 7 expires of the copy, 8 size, 9 packed, 10 max_per_user, 11 max_bytes,
# 12 seq_keep, 13 inbox_ttl, 14 this node, 15 frame header to, 16 frame header from, 17 channel prefix,
# 18 sender index key ('' = none), 19 its record without the held copies, 20 how long to keep it (ms),
# 21 dedup key ('' = no client_msg_id), 22 its expiry (s), 23 its window (ms), 24 msg_id, 25 ts,
# 26 client_msg_id, 27 '1' when the recipient has a device on this node
_ROUTE = Script(
    APPEND_LUA
    + """
local prefix, me = ARGV[1], ARGV[14]
local epoch = ensure_epoch(KEYS[1], ARGV[2])
local function devices(user)
  local nodes, total = {}, 0
  for _, v in ipairs(redis.call('HVALS', prefix .. 'presence:' .. user)) do
    local node = cjson.decode(v).node
    nodes[node] = (nodes[node] or 0) + 1
    total = total + 1
  end
  return nodes, total
end
local function forward(nodes, header, seq)
  for node, _ in pairs(nodes) do
    if node ~= me then
      redis.call('PUBLISH', ARGV[17] .. node,
                 'S' .. string.format('%08d', #header) .. header .. string.format('%012d', seq) .. ARGV[9])
    end
  end
end
local to_nodes, to_total = devices(ARGV[3])
local expires = ARGV[6]
if to_total > 0 then expires = ARGV[5] end
local seq_to, evicted = append(prefix, ARGV[3], expires, ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12], ARGV[13])
forward(to_nodes, ARGV[15], seq_to)
local seq_from = 0
if ARGV[4] ~= '' then
  local seq, ev = append(prefix, ARGV[4], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12], ARGV[13])
  seq_from, evicted = seq, evicted + ev
  forward(devices(ARGV[4]), ARGV[16], seq_from)
end
if ARGV[18] ~= '' then
  local sent = ARGV[19] .. '\\0' .. ARGV[3] .. '\\0' .. seq_to
  if ARGV[4] ~= '' then sent = sent .. '\\0' .. ARGV[4] .. '\\0' .. seq_from end
  redis.call('SET', ARGV[18], sent, 'PX', ARGV[20])
end
-- with a client_msg_id, the Ack's dedup record is written with the message: a retry whose first
-- reply was lost (a failover closed the connection) finds it and gets the first Ack
if ARGV[21] ~= '' then
  local ack_seq, delivered = seq_to, 'buffered'
  if ARGV[4] ~= '' then ack_seq = seq_from end
  if to_total > 0 or ARGV[27] == '1' then delivered = 'online' end
  local ack = {msg_id = ARGV[24], status = 'SENT', ts = tonumber(ARGV[25]), delivered = delivered, seq = ack_seq,
               client_msg_id = ARGV[26]}
  redis.call('SET', ARGV[21], cmsgpack.pack({tonumber(ARGV[22]), ack}), 'PX', ARGV[23])
end
local held, bytes = held_stats(prefix)
return {seq_to, evicted, epoch, held, bytes, seq_from, to_total}
"""
)


@dataclass(frozen=True, slots=True)
class Routed:
    """What `append_routed` did: the seqs, and whether the recipient is online on some node (the
    other nodes were told; this node delivers to its own devices from its session table)."""

    seq_to: int
    seq_from: int | None
    to_online: bool


_EXPIRE = Script(
    """
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, m in ipairs(gone) do
  local who, s, sz = string.match(m, '^(.*)%z(%d+)%z(%d+)$')
  redis.call('ZREMRANGEBYSCORE', ARGV[2] .. who, s, s)
  redis.call('DECRBY', KEYS[2], sz)
end
if #gone > 0 then redis.call('ZREM', KEYS[1], unpack(gone)) end
return {#gone, redis.call('ZCARD', KEYS[1]), tonumber(redis.call('GET', KEYS[2]) or '0')}
"""
)

# One sync page, cut here (see mics.buffer.SYNC_PAGE_BYTES): the unexpired held members after a seq,
# read SINCE_BATCH at a time, while their stored sizes fit the budget (at least one), so a full inbox
# of large messages never leaves Redis for a node to throw away. KEYS: inbox, seq, epoch; ARGV: since,
# now (ms), budget (bytes), most messages, batch. Returns {epoch, last seq, members with scores, more}.
_SINCE = Script(
    """
local budget, most, batch, now = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[2])
local page, count, total, more, offset = {}, 0, 0, 0, 0
repeat
  local got = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'WITHSCORES', 'LIMIT', offset, batch)
  for i = 1, #got, 2 do
    local expires, size = string.match(got[i], '^(%d+):(%d+):')
    if tonumber(expires) > now then
      size = tonumber(size)
      if count > 0 and (total + size > budget or count == most) then more = 1; break end
      total, count = total + size, count + 1
      page[#page + 1] = got[i]
      page[#page + 1] = got[i + 1]
    end
  end
  offset = offset + batch
until more == 1 or #got < 2 * batch
return {redis.call('GET', KEYS[3]) or false, tonumber(redis.call('GET', KEYS[2]) or '0'), page, more}
"""
)

_EPOCH = Script(APPEND_LUA + "return ensure_epoch(KEYS[1], ARGV[1])")

# Shared by the amend scripts: the held member of `user`'s `seq` if it is the message `msg_id`.
HELD_LUA = """
local function held_member(prefix, user, seq, msg_id)
  local found = redis.call('ZRANGEBYSCORE', prefix .. 'inbox:' .. user, seq, seq)
  if #found == 1 and string.find(found[1], msg_id, 1, true) then return found[1] end
  return nil
end
"""

# The first held copy still there (its packed entry), unless the record is gone or recalled.
# KEYS: the record; ARGV: prefix, msg_id, then user, seq pairs. Returns {state, packed}: state 0 = no
# record (or recalled), 1 = found.
_HELD_FIRST = Script(
    HELD_LUA
    + """
local record = redis.call('GET', KEYS[1])
if not record or string.sub(record, 1, 1) == '1' then return {0, false} end
for i = 3, #ARGV, 2 do
  local member = held_member(ARGV[1], ARGV[i], ARGV[i + 1], ARGV[2])
  if member then return {1, string.match(member, '^%d+:%d+:(.*)$')} end
end
return {1, false}
"""
)

# Replace every held copy with `packed` (same seq and expiry, new size), atomically with the record
# check, so an edit never overwrites a recall's tombstone. KEYS: the record, the tenant's held zset,
# the byte counter; ARGV: prefix, msg_id, recall ('1'/'0'), packed ('' = none), size, then user, seq
# pairs. Returns 1, or 0 when the record is gone or was recalled.
_AMEND = Script(
    HELD_LUA
    + """
local record = redis.call('GET', KEYS[1])
if not record or string.sub(record, 1, 1) == '1' then return 0 end
if ARGV[3] == '1' then redis.call('SET', KEYS[1], '1' .. string.sub(record, 2), 'KEEPTTL') end
if ARGV[4] == '' then return 1 end
for i = 6, #ARGV, 2 do
  local user, seq = ARGV[i], ARGV[i + 1]
  local member = held_member(ARGV[1], user, seq, ARGV[2])
  if member then
    local expires, size = string.match(member, '^(%d+):(%d+):')
    local inbox = ARGV[1] .. 'inbox:' .. user
    redis.call('ZREM', inbox, member)
    redis.call('ZADD', inbox, seq, expires .. ':' .. ARGV[5] .. ':' .. ARGV[4])
    redis.call('ZREM', KEYS[2], user .. '\\0' .. seq .. '\\0' .. size)
    redis.call('ZADD', KEYS[2], expires, user .. '\\0' .. seq .. '\\0' .. ARGV[5])
    redis.call('INCRBY', KEYS[3], tonumber(ARGV[5]) - tonumber(size))
  end
end
return 1
"""
)


def _sent_record(sent: Sent) -> bytes:
    """The fixed part of a sender index record (flag, from, to, group, ts); held copies follow."""
    return "\0".join(("0", sent.from_user_id, sent.to_user_id or "", sent.group_id or "", str(sent.ts))).encode()


def _parse_sent(msg_id: str, value: bytes) -> Sent:
    parts = value.decode().split("\0")
    held = tuple((parts[i], int(parts[i + 1])) for i in range(5, len(parts) - 1, 2))
    return Sent(msg_id, parts[1], parts[2] or None, parts[3] or None, int(parts[4]), held, parts[0] == "1")


def _held_entry(member: bytes, score: bytes, now_ms: float) -> dict[str, Any] | None:
    """A held inbox member (`<expires_ms>:<size>:<msgpack entry>`, scored by seq) as its entry with
    its seq, or None once expired."""
    expires, _size, packed = member.split(b":", 2)
    if int(expires) <= now_ms:
        return None
    entry: dict[str, Any] = msgpack.unpackb(packed, raw=False)
    entry["seq"] = int(score)
    return entry


class RedisBuffer(CatchupBuffer):
    """Held inbox messages of one tenant, in Redis."""

    def __init__(
        self, tenant_id: str, max_per_user: int, max_bytes: int, clock: Callable[[], float], redis: Any
    ) -> None:
        super().__init__(tenant_id, max_per_user, max_bytes, clock)
        self._redis = redis
        self._keys = TenantKeys(tenant_id)
        self._held = 0  # tenant-wide, as of the last append or expiry
        self._bytes = 0
        # the epoch the scripts set when Redis has none (first use, or Redis came back empty)
        self._candidate = os.urandom(6).hex()

    async def _ensure_epoch(self) -> str:
        if not self._epoch:
            epoch = await _EPOCH(self._redis, [self._keys.epoch], [self._candidate])
            self._epoch = epoch.decode()
        return self._epoch

    async def append(self, user_id: str, entry: dict[str, Any], size: int, hold_s: float) -> int:
        keys = self._keys
        now_ms = int(self._clock() * 1000)
        hold_ms = int(hold_s * 1000)
        packed = msgpack.packb(entry, use_bin_type=True) if hold_ms > 0 else b""
        result = await _APPEND(
            self._redis,
            [keys.epoch],
            [
                keys.prefix,
                self._candidate,
                user_id,
                now_ms + hold_ms if hold_ms > 0 else 0,
                size,
                packed,
                self._max_per_user,
                self._max_bytes,
                SEQ_KEEP_MS,
                hold_ms + 1000,  # the inbox key outlives its longest-held entry
            ],
        )
        seq = self._appended(result)
        entry["seq"] = seq
        return seq

    async def append_routed(
        self,
        to_user_id: str,
        from_user_id: str | None,
        payload: dict[str, Any],
        size: int,
        holds: tuple[float, float, float],
        node_id: str,
        frames: tuple[bytes, bytes],
        channel_prefix: str,
        sent: Sent | None = None,
        keep_s: float = 0,
        to_here: bool = False,
    ) -> Routed:
        """Cluster mode 1:1: hold for the recipient (and a copy for the sender) and forward to the
        other nodes, in one script run. `holds`: recipient online, recipient offline, sender copy (s).
        With `sent`, the same run records it in the sender index for `keep_s`. A payload with a
        `client_msg_id` also gets its Ack's dedup record in the same run (`to_here`: the recipient has
        a device on this node, so the Ack says online)."""
        now_ms = int(self._clock() * 1000)
        index = (self._keys.sent(sent.msg_id), _sent_record(sent), int(keep_s * 1000)) if sent else ("", b"", 0)
        expires = [now_ms + int(h * 1000) if h > 0 else 0 for h in holds]
        cmid = payload.get("client_msg_id")
        dedup = ["", "", "", "", "", ""]
        if cmid is not None:
            key = self._keys.dedup(payload["from_user_id"], cmid)
            window_ms = int(DEDUP_WINDOW_S * 1000)
            dedup = [key, repr(self._clock() + DEDUP_WINDOW_S), window_ms, payload["msg_id"], payload["ts"], cmid]
        result = await _ROUTE(
            self._redis,
            [self._keys.epoch],
            [
                self._keys.prefix,
                self._candidate,
                to_user_id,
                from_user_id or "",
                *expires,
                size,
                msgpack.packb(payload, use_bin_type=True),
                self._max_per_user,
                self._max_bytes,
                SEQ_KEEP_MS,
                int(max(holds) * 1000) + 1000,
                node_id,
                *frames,
                channel_prefix,
                *index,
                *dedup,
                "1" if to_here else "0",
            ],
        )
        seq_to = self._appended(result)
        return Routed(seq_to, int(result[5]) if from_user_id else None, int(result[6]) > 0)

    async def append_many(self, user_ids: list[str], entry: dict[str, Any], size: int, hold_s: float) -> list[int]:
        keys = self._keys
        hold_ms = int(hold_s * 1000)
        expires = int(self._clock() * 1000) + hold_ms
        packed = msgpack.packb(entry, use_bin_type=True)
        fixed = [keys.prefix, self._candidate, expires, size, packed, self._max_per_user, self._max_bytes,
                 SEQ_KEEP_MS, hold_ms + 1000]  # fmt: skip
        seqs: list[int] = []
        for at in range(0, len(user_ids), APPEND_MANY_BATCH):  # bounded script runs: Redis serves others between
            result = await _APPEND_MANY(self._redis, [keys.epoch], [*fixed, *user_ids[at : at + APPEND_MANY_BATCH]])
            self._appended(result)
            seqs.extend(int(seq) for seq in result[5])
        return seqs

    def _appended(self, result: list[Any]) -> int:
        """Book-keeping from an append script's reply {seq, evicted, epoch, held, bytes}."""
        self.evicted += int(result[1])
        self._epoch = result[2].decode()
        self._held, self._bytes = int(result[3]), int(result[4])
        return int(result[0])

    async def since(self, user_id: str, since_seq: int, epoch: str | None) -> SyncResult:
        keys = self._keys
        now_ms = int(self._clock() * 1000)
        current, last, members, more = await _SINCE(
            self._redis, [keys.inbox(user_id), keys.seq(user_id), keys.epoch],
            [max(0, since_seq), now_ms, SYNC_PAGE_BYTES, SYNC_PAGE_MESSAGES, SINCE_BATCH],
        )  # fmt: skip
        our_epoch = current.decode() if current else await self._ensure_epoch()
        self._epoch = our_epoch
        if epoch is not None and epoch != our_epoch and since_seq > 0:
            # an old stream: everything held is new to the client
            return await self.since(user_id, 0, epoch)
        page: list[tuple[int, dict[str, Any]]] = []
        for i in range(0, len(members), 2):
            entry = _held_entry(members[i], members[i + 1], now_ms)
            if entry is not None:  # the script already left out the expired ones
                page.append((entry["seq"], entry))
        return sync_result(page, bool(int(more)) and bool(page), int(last or 0), our_epoch, since_seq, epoch)

    async def recent(self, user_id: str, limit: int, match: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        """Newest first, a page at a time (a user holds at most offline_max_per_user entries)."""
        found: list[dict[str, Any]] = []
        key = self._keys.inbox(user_id)
        offset = 0
        now_ms = self._clock() * 1000
        while len(found) < limit:
            page = await self._redis.execute_command(
                "ZREVRANGEBYSCORE", key, "+inf", "-inf", "WITHSCORES", "LIMIT", offset, RECENT_PAGE
            )
            for i in range(0, len(page), 2):
                entry = _held_entry(page[i], page[i + 1], now_ms)
                if entry is not None and match(entry):
                    found.append(entry)
                    if len(found) == limit:
                        break
            if len(page) < 2 * RECENT_PAGE:
                break
            offset += RECENT_PAGE
        found.reverse()
        return found

    async def last_seq(self, user_id: str) -> int:
        value = await self._redis.get(self._keys.seq(user_id))
        return int(value or 0)

    async def seen(self, user_id: str, client_msg_id: str) -> dict[str, Any] | None:
        value = await self._redis.get(self._keys.dedup(user_id, client_msg_id))
        if value is None:
            return None
        expires, ack = msgpack.unpackb(value, raw=False)
        return ack if expires > self._clock() else None  # type: ignore[no-any-return]

    async def remember(self, user_id: str, client_msg_id: str, ack: dict[str, Any]) -> None:
        key = self._keys.dedup(user_id, client_msg_id)
        value = msgpack.packb([self._clock() + DEDUP_WINDOW_S, ack], use_bin_type=True)
        await self._redis.execute_command("SET", key, value, "PX", int(DEDUP_WINDOW_S * 1000))

    async def remember_sent(self, sent: Sent, keep_s: float) -> None:
        value = _sent_record(sent) + b"".join(b"\0%s\0%d" % (u.encode(), seq) for u, seq in sent.held)
        await self._redis.execute_command("SET", self._keys.sent(sent.msg_id), value, "PX", int(keep_s * 1000))

    async def sent(self, msg_id: str) -> Sent | None:
        value = await self._redis.get(self._keys.sent(msg_id))
        return None if value is None else _parse_sent(msg_id, value)

    async def amend(self, sent: Sent, patch: dict[str, Any], size: int, recall: bool) -> bool:
        """Two round trips: the first held copy (its fields stay, `patch` goes over them), then every
        copy replaced in one script that checks the record again (an edit never undoes a recall)."""
        keys = self._keys
        record = keys.sent(sent.msg_id)
        pairs = [x for user_id, seq in sent.held for x in (user_id, seq)]
        state, packed = await _HELD_FIRST(self._redis, [record], [keys.prefix, sent.msg_id, *pairs])
        if not int(state):
            return False
        new = b""
        if packed:
            entry = msgpack.unpackb(packed, raw=False)
            entry.update(patch)
            new = msgpack.packb(entry, use_bin_type=True)
        changed = await _AMEND(
            self._redis, [record, keys.held, keys.bytes],
            [keys.prefix, sent.msg_id, "1" if recall else "0", new, size, *pairs],
        )  # fmt: skip
        return bool(int(changed))

    def expire(self) -> Deferred[None]:
        def failed(f: Any) -> None:
            metrics.REDIS_FAILURES.labels("expiry").inc()
            log.warn("buffer expiry failed: tenant_id={tenant_id} error={error}",
                     tenant_id=self.tenant_id, error=f.getErrorMessage())  # fmt: skip

        return Deferred.fromCoroutine(self._expire()).addErrback(failed)

    async def _expire(self) -> None:
        keys = self._keys
        now_ms = int(self._clock() * 1000)
        gone, held, held_bytes = await _EXPIRE(
            self._redis, [keys.held, keys.bytes], [now_ms, keys.prefix + "inbox:", EXPIRE_BATCH]
        )
        self.expired += int(gone)
        self._held, self._bytes = int(held), int(held_bytes)
        await self._ensure_epoch()

    async def flush(self) -> None:
        """A new epoch, then every held message, seq counter and dedup record of the tenant goes."""
        redis = self._redis
        prefix = self._keys.prefix
        self._candidate = os.urandom(6).hex()
        await redis.set(self._keys.epoch, self._candidate)
        self._epoch = ""
        for pattern in ("inbox:*", "seq:*", "dedup:*", "sent:*", "held", "bytes"):
            cursor = b"0"
            while True:
                cursor, found = await redis.execute_command("SCAN", cursor, "MATCH", prefix + pattern, "COUNT", 1000)
                if found:
                    await redis.execute_command("UNLINK", *found)
                if cursor in (b"0", 0, "0"):
                    break
        self._held = self._bytes = 0
        await self._ensure_epoch()

    def stats(self) -> dict[str, int]:
        """Tenant-wide held counts as of the last expire tick; evicted/expired as seen by this node."""
        return {
            "held_messages": self._held,
            "held_bytes": self._bytes,
            "evicted": self.evicted,
            "expired": self.expired,
        }
