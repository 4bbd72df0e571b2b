"""Presence in Redis, for cluster mode.

`{t}:presence:<user>` is a hash device_id -> JSON {"node", "session", "online_at"}: a device is
where its newest session is. `{t}:sessions:<node>` indexes the entries a node wrote, so another
node can remove them when that node dies. A leave removes the device only if the entry is still
its own session (the device may have reconnected to another node meanwhile).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from txaio import make_logger

from mics import metrics
from mics.cluster.redis import Script, TenantKeys
from mics.presence import Presence
from mics.sessions import SessionInfo, SessionTable

log = make_logger()

# returns the device's previous entry (its older session, maybe on another node)
_JOIN = Script(
    """
local old = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return old
"""
)

# KEYS: presence, node index; ARGV: device, session, index member
_LEAVE = Script(
    """
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v and cjson.decode(v).session == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end
redis.call('SREM', KEYS[2], ARGV[3])
"""
)

_WHERE = Script(
    """
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('HGETALL', key) end
return out
"""
)

_ONLINE = Script(
    """
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then out[#out + 1] = i end
end
return out
"""
)

# KEYS: the node's index; ARGV: presence key prefix. Returns the removed JSON values.
_REAP = Script(
    """
local removed = {}
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local user, device, session = string.match(member, '^(.*)%z(.*)%z(%d+)$')
  local key = ARGV[1] .. user
  local v = redis.call('HGET', key, device)
  if v and cjson.decode(v).session == session then
    redis.call('HDEL', key, device)
    removed[#removed + 1] = v
  end
end
redis.call('DEL', KEYS[1])
return removed
"""
)


def _member(info: SessionInfo) -> str:
    return f"{info.user_id}\0{info.device_id}\0{info.session_id}"


def _entry(value: bytes) -> dict[str, Any]:
    """A session-list entry from a presence value."""
    data = json.loads(value)
    return {
        "session_id": int(data["session"]),
        "user_id": data["user"],
        "device_id": data["device"],
        "node_id": data["node"],
        "online_at": data["online_at"],
    }


class RedisPresence(Presence):
    """Redis for the other nodes; this node's own session table for its own devices, which is
    exact even while a join's presence write is still on its way to Redis."""

    def __init__(
        self,
        tenant_id: str,
        node_id: str,
        redis: Any,
        sessions: SessionTable,
        on_replaced: Callable[[str, int], None] | None = None,
    ) -> None:
        self._keys = TenantKeys(tenant_id)
        self._node_id = node_id
        self._redis = redis
        self._sessions = sessions
        # (node_id, session_id) of a device's older session on another node, to be closed there
        self._on_replaced = on_replaced
        # writes that failed, by session: retried on the next tick, a later write replaces one
        self._failed: dict[int, tuple[Script, SessionInfo, list[Any]]] = {}
        self._index = self._keys.node_sessions(node_id)

    async def where(self, user_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        found = await _WHERE(self._redis, [self._keys.presence(u) for u in user_ids], [])
        me, local = self._node_id, self._sessions.devices
        out: dict[str, dict[str, str]] = {}
        for user_id, flat in zip(user_ids, found, strict=True):
            devices = {flat[i].decode(): json.loads(flat[i + 1])["node"] for i in range(0, len(flat), 2)}
            devices = {d: n for d, n in devices.items() if n != me}
            devices.update(dict.fromkeys(local(user_id), me))
            out[user_id] = devices
        return out

    async def online_among(self, user_ids: Sequence[str]) -> set[str]:
        if not user_ids:
            return set()
        by_user = self._sessions.by_user
        hits = await _ONLINE(self._redis, [self._keys.presence(u) for u in user_ids], [])
        return {user_ids[int(i) - 1] for i in hits}.union(u for u in user_ids if u in by_user)

    async def any_online(self, user_ids: Sequence[str]) -> bool:
        by_user = self._sessions.by_user  # someone on this node is enough: no Redis round trip
        return any(u in by_user for u in user_ids) or await super().any_online(user_ids)

    async def sessions(self, user_id: str | None) -> list[dict[str, Any]]:
        redis = self._redis
        if user_id is not None:
            users = [user_id]
        else:
            prefix = self._keys.presence("")
            users, cursor = [], b"0"
            while True:
                cursor, found = await redis.execute_command("SCAN", cursor, "MATCH", prefix + "*", "COUNT", 1000)
                users.extend(k.decode()[len(prefix) :] for k in found)
                if cursor in (b"0", 0, "0"):
                    break
        out = []
        for user in users:
            flat = await redis.execute_command("HGETALL", self._keys.presence(user))
            out.extend(_entry(flat[i]) for i in range(1, len(flat), 2))
        return out

    def joined(self, info: SessionInfo) -> None:
        value = json.dumps(
            {
                "node": self._node_id,
                "session": str(info.session_id),
                "online_at": info.online_at,
                "user": info.user_id,
                "device": info.device_id,
            }
        )
        self._write(_JOIN, info, [info.device_id, value, _member(info)])

    def left(self, info: SessionInfo) -> None:
        self._write(_LEAVE, info, [info.device_id, str(info.session_id), _member(info)])

    def retry(self) -> None:
        """Write again what failed (called from the node's tick)."""
        failed, self._failed = self._failed, {}
        for script, info, args in failed.values():
            self._write(script, info, args)

    def _write(self, script: Script, info: SessionInfo, args: list[Any]) -> None:
        self._failed.pop(info.session_id, None)
        d = script(self._redis, [self._keys.presence(info.user_id), self._index], args)
        if script is _JOIN:
            d.addCallback(self._replaced, info)

        def failed(f: Any) -> None:
            metrics.REDIS_FAILURES.labels("presence").inc()
            log.warn("presence write failed: user_id={user_id} error={error}",
                     user_id=info.user_id, error=f.getErrorMessage())  # fmt: skip
            self._failed.setdefault(info.session_id, (script, info, args))

        d.addErrback(failed)

    def _replaced(self, old: bytes | None, info: SessionInfo) -> None:
        """The device was connected elsewhere: that session ends (mics.close.replaced)."""
        if old is None or self._on_replaced is None:
            return
        data = json.loads(old)
        if data["node"] != self._node_id and int(data["session"]) != info.session_id:
            self._on_replaced(data["node"], int(data["session"]))

    async def reap(self, node_id: str) -> list[dict[str, Any]]:
        index = self._keys.node_sessions(node_id)
        removed = await _REAP(self._redis, [index], [self._keys.presence("")])
        return [_entry(value) for value in removed]
