"""The catch-up buffer in Redis, shared by the nodes of a cluster.

Keys (one tenant's all in its hash slot, see mics.cluster.redis):
- `{t}:seq:<user>`: the user's seq counter (kept a day after its last use);
- `{t}:inbox:<user>`: zset of held messages scored by seq; a member is
  `<expires_ms>:<size>:<msgpack entry without seq>`;
- `{t}:held`: zset of `<user>\\0<seq>\\0<size>` scored by expiry, tenant-wide, for expiry and the
  byte cap; `{t}:bytes`: bytes held; `{t}:epoch`: the stream's name;
- `{t}:dedup:<user>:<client_msg_id>`: a send's Ack, for the dedup window.

Each append is one script run, so seq allocation, holding and both caps are atomic across nodes.
When the tenant's byte cap is hit, the entry closest to expiry goes first (in memory: the oldest);
the per-user cap drops the user's oldest, as in memory.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import msgpack
from twisted.internet.defer import Deferred
from txaio import make_logger

from mics.buffer import CatchupBuffer, sync_result
from mics.buffer.memory import DEDUP_WINDOW_S
from mics.cluster.redis import Script, TenantKeys
from mics.types import SyncResult

log = make_logger()

SEQ_KEEP_MS = 86_400_000
EXPIRE_BATCH = 1000

_APPEND = Script(
    """
local epoch = redis.call('GET', KEYS[5])
if not epoch then epoch = ARGV[11]; redis.call('SET', KEYS[5], epoch) end
local seq = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
if ARGV[2] == '0' then return {seq, 0, epoch} end
local user, size = ARGV[6], tonumber(ARGV[3])
redis.call('ZADD', KEYS[2], seq, ARGV[2] .. ':' .. ARGV[3] .. ':' .. ARGV[8])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[9]) then redis.call('PEXPIRE', KEYS[2], ARGV[9]) end
redis.call('ZADD', KEYS[3], ARGV[2], user .. '\\0' .. seq .. '\\0' .. ARGV[3])
local bytes = redis.call('INCRBY', KEYS[4], size)
local evicted = 0
while redis.call('ZCARD', KEYS[2]) > tonumber(ARGV[4]) do
  local head = redis.call('ZPOPMIN', KEYS[2])
  local head_size = string.match(head[1], '^%d+:(%d+):')
  redis.call('ZREM', KEYS[3], user .. '\\0' .. head[2] .. '\\0' .. head_size)
  bytes = redis.call('DECRBY', KEYS[4], head_size)
  evicted = evicted + 1
end
while bytes > tonumber(ARGV[5]) do
  local oldest = redis.call('ZPOPMIN', KEYS[3])
  if #oldest == 0 then break end
  local who, s, sz = string.match(oldest[1], '^(.*)%z(%d+)%z(%d+)$')
  redis.call('ZREMRANGEBYSCORE', ARGV[10] .. who, s, s)
  bytes = redis.call('DECRBY', KEYS[4], sz)
  evicted = evicted + 1
end
return {seq, evicted, epoch, redis.call('ZCARD', KEYS[3]), bytes}
"""
)

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

_SINCE = Script(
    """
return {redis.call('GET', KEYS[3]) or false, tonumber(redis.call('GET', KEYS[2]) or '0'),
        redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'WITHSCORES')}
"""
)

_EPOCH = Script(
    """
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
"""
)


class RedisBuffer(CatchupBuffer):
    """Held inbox messages of one tenant, in Redis."""

    def __init__(
        self, tenant_id: str, max_per_user: int, max_bytes: int, clock: Callable[[], float], redis: Any
    ) -> None:
        self.tenant_id = tenant_id
        self._clock = clock
        self._redis = redis
        self._keys = TenantKeys(tenant_id)
        self._max_per_user = max_per_user
        self._max_bytes = max_bytes
        self._epoch = ""
        self._held = 0
        self._bytes = 0
        self.evicted = 0
        self.expired = 0

    @property
    def epoch(self) -> str:
        return self._epoch

    def configure(self, max_per_user: int, max_bytes: int) -> None:
        self._max_per_user = max_per_user
        self._max_bytes = max_bytes

    async def _ensure_epoch(self) -> str:
        if not self._epoch:
            epoch = await _EPOCH(self._redis, [self._keys.epoch], [os.urandom(6).hex()])
            self._epoch = epoch.decode()
        return self._epoch

    async def append(self, user_id: str, entry: dict[str, Any], size: int, hold_s: float) -> int:
        keys = self._keys
        now_ms = int(self._clock() * 1000)
        hold_ms = int(hold_s * 1000)
        packed = msgpack.packb(entry, use_bin_type=True) if hold_ms > 0 else b""
        result = await _APPEND(
            self._redis,
            [keys.seq(user_id), keys.inbox(user_id), keys.held, keys.bytes, keys.epoch],
            [
                now_ms,
                now_ms + hold_ms if hold_ms > 0 else 0,
                size,
                self._max_per_user,
                self._max_bytes,
                user_id,
                SEQ_KEEP_MS,
                packed,
                hold_ms + 1000,  # the inbox key outlives its longest-held entry
                keys.prefix + "inbox:",
                os.urandom(6).hex(),
            ],
        )
        seq = int(result[0])
        self.evicted += int(result[1])
        self._epoch = result[2].decode()
        if len(result) > 3:
            self._held, self._bytes = int(result[3]), int(result[4])
        entry["seq"] = seq
        return seq

    async def since(self, user_id: str, since_seq: int, epoch: str | None) -> SyncResult:
        keys = self._keys
        current, last, members = await _SINCE(
            self._redis, [keys.inbox(user_id), keys.seq(user_id), keys.epoch], [max(0, since_seq)]
        )
        our_epoch = current.decode() if current else await self._ensure_epoch()
        self._epoch = our_epoch
        now_ms = self._clock() * 1000
        held: list[tuple[int, dict[str, Any]]] = []
        for i in range(0, len(members), 2):
            expires, _size, packed = members[i].split(b":", 2)
            if int(expires) <= now_ms:
                continue
            entry = msgpack.unpackb(packed, raw=False)
            entry["seq"] = seq = int(members[i + 1])
            held.append((seq, entry))
        if epoch is not None and epoch != our_epoch and since_seq > 0:
            # an old stream: everything held is new to the client
            return await self.since(user_id, 0, epoch)
        return sync_result(held, int(last or 0), our_epoch, since_seq, epoch)

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

    def expire(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._expire()).addErrback(
            lambda f: log.warn(
                "buffer expiry failed: tenant_id={tenant_id} error={error}",
                tenant_id=self.tenant_id,
                error=f.getErrorMessage(),
            )
        )

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
        await redis.set(self._keys.epoch, os.urandom(6).hex())
        self._epoch = ""
        for pattern in ("inbox:*", "seq:*", "dedup:*", "held", "bytes"):
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
