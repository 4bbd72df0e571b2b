"""Presence in Redis, for cluster mode.

`{t}:presence:<user>` is a hash device_id -> JSON {"node", "session", "online_at"}: a device is
where its newest session is. `{t}:sessions:<node>` indexes the entries a node wrote, so another
node can remove them when that node dies. A leave removes the device only if the entry is still
its own session (the device may have reconnected to another node meanwhile).

Live presence (section 11): `{t}:watchers:<user>` is the set of nodes with subscribers of
`mics.presence.<user>` (their routers know; each node writes its own entry when its first
subscriber comes and removes it when its last one goes), `{t}:watching:<node>` the users a node
watches. The same script that changes a user's devices (join, leave, reaping) publishes the new
device list as a `P` frame to every other watching node, so a change costs nothing extra when
nobody watches, and one publish per watching node when someone does.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from txaio import make_logger

from mics import metrics
from mics.cluster.redis import Script, TenantKeys, node_channel
from mics.presence import Presence
from mics.sessions import SessionInfo, SessionTable
from mics.types import now_ms

_CHANNEL_PREFIX = node_channel("")

log = make_logger()

# A user's devices changed: their new list to every watching node but `me` ("P" frame, see
# mics.cluster.unpack_presence_frame); returns the list.
NOTIFY_LUA = """
local function notify(prefix, user, me, origin, channel_prefix, tenant, ts)
  local devices = redis.call('HKEYS', prefix .. 'presence:' .. user)
  local watchers = redis.call('SMEMBERS', prefix .. 'watchers:' .. user)
  if #watchers > 0 then
    local frame = 'P' .. cjson.encode({origin, tenant, user, devices, ts})
    for _, node in ipairs(watchers) do
      if node ~= me then redis.call('PUBLISH', channel_prefix .. node, frame) end
    end
  end
  return devices
end
"""

# KEYS: presence, node index; ARGV: device, value, index member, then (for notify) tenant prefix, user,
# this node, channel prefix, tenant, ts. Returns {the device's previous entry (its older session, maybe
# on another node) or nil, 1 if the user's devices changed, the devices}.
_JOIN = Script(
    NOTIFY_LUA
    + """
local old = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
if old then return {old, 0, {}} end
return {false, 1, notify(ARGV[4], ARGV[5], ARGV[6], ARGV[6], ARGV[7], ARGV[8], ARGV[9])}
"""
)

# KEYS: presence, node index; ARGV: device, session, index member, then as _JOIN. Returns {changed, devices}.
_LEAVE = Script(
    NOTIFY_LUA
    + """
local v = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[3])
if v and cjson.decode(v).session == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return {1, notify(ARGV[4], ARGV[5], ARGV[6], ARGV[6], ARGV[7], ARGV[8], ARGV[9])}
end
return {0, {}}
"""
)

# KEYS: the user's watchers, the node's watching set; ARGV: node, user, '1' (watch) or '0' (stop)
_WATCH = Script(
    """
if ARGV[3] == '1' then
  redis.call('SADD', KEYS[1], ARGV[1])
  redis.call('SADD', KEYS[2], ARGV[2])
else
  redis.call('SREM', KEYS[1], ARGV[1])
  redis.call('SREM', KEYS[2], ARGV[2])
end
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

# KEYS: the node's index, the node's watching set; ARGV: tenant prefix, the lost node, channel prefix,
# tenant, ts. The lost node stops watching; every user who lost a device is announced to the nodes that
# watch them (this one included: the frame's origin is the lost node). Returns the removed JSON values.
_REAP = Script(
    NOTIFY_LUA
    + """
for _, user in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  redis.call('SREM', ARGV[1] .. 'watchers:' .. user, ARGV[2])
end
redis.call('DEL', KEYS[2])
local removed, users = {}, {}
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local user, device, session = string.match(member, '^(.*)%z(.*)%z(%d+)$')
  local key = ARGV[1] .. 'presence:' .. user
  local v = redis.call('HGET', key, device)
  if v and cjson.decode(v).session == session then
    redis.call('HDEL', key, device)
    removed[#removed + 1] = v
    users[user] = true
  end
end
redis.call('DEL', KEYS[1])
for user, _ in pairs(users) do notify(ARGV[1], user, '', ARGV[2], ARGV[3], ARGV[4], ARGV[5]) end
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
        self._tenant_id = tenant_id
        self._keys = TenantKeys(tenant_id)
        self._node_id = node_id
        self._redis = redis
        self._sessions = sessions
        # (node_id, session_id) of a device's older session on another node, to be closed there
        self._on_replaced = on_replaced
        # writes that failed, by session: retried on the next tick, a later write replaces one
        self._failed: dict[int, tuple[Script, SessionInfo, list[Any]]] = {}
        self._index = self._keys.node_sessions(node_id)
        self._watched: set[str] = set()  # users with presence subscribers on this node
        self._watch_failed: dict[str, bool] = {}  # watch writes to retry: user -> watched
        self._inflight: set[Deferred[Any]] = set()

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

    def joined(self, info: SessionInfo, device_added: bool = True) -> None:
        """Whether the user's devices changed is Redis's to say (the device may be online elsewhere)."""
        value = json.dumps(
            {
                "node": self._node_id,
                "session": str(info.session_id),
                "online_at": info.online_at,
                "user": info.user_id,
                "device": info.device_id,
            }
        )
        self._write(_JOIN, info, [info.device_id, value, _member(info), *self._notify_args(info)])

    def left(self, info: SessionInfo, device_removed: bool = True) -> None:
        self._write(_LEAVE, info, [info.device_id, str(info.session_id), _member(info), *self._notify_args(info)])

    def _notify_args(self, info: SessionInfo) -> list[Any]:
        return [self._keys.prefix, info.user_id, self._node_id, _CHANNEL_PREFIX, self._tenant_id, str(now_ms())]

    @property
    def needs_watch(self) -> bool:
        return True

    def watch(self, user_id: str) -> None:
        self._watched.add(user_id)
        self._write_watch(user_id, True)

    def unwatch(self, user_id: str) -> None:
        self._watched.discard(user_id)
        self._write_watch(user_id, False)

    def rewatch(self) -> None:
        """Write every watch of this node again (Redis lost its data)."""
        for user_id in self._watched:
            self._write_watch(user_id, True)

    def _write_watch(self, user_id: str, watched: bool) -> None:
        self._watch_failed.pop(user_id, None)
        keys = [self._keys.watchers(user_id), self._keys.watching(self._node_id)]
        d = _WATCH(self._redis, keys, [self._node_id, user_id, "1" if watched else "0"])

        def failed(f: Any) -> None:
            metrics.REDIS_FAILURES.labels("presence").inc()
            log.warn("presence watch write failed: user_id={user_id} error={error}",
                     user_id=user_id, error=f.getErrorMessage())  # fmt: skip
            self._watch_failed.setdefault(user_id, watched)

        d.addErrback(failed)
        self._track(d)

    def retry(self) -> None:
        """Write again what failed (called from the node's tick)."""
        failed, self._failed = self._failed, {}
        for script, info, args in failed.values():
            self._write(script, info, args)
        watches, self._watch_failed = self._watch_failed, {}
        for user_id, watched in watches.items():
            self._write_watch(user_id, watched)

    def _write(self, script: Script, info: SessionInfo, args: list[Any]) -> None:
        self._failed.pop(info.session_id, None)
        d = script(self._redis, [self._keys.presence(info.user_id), self._index], args)

        def failed(f: Any) -> None:
            metrics.REDIS_FAILURES.labels("presence").inc()
            log.warn("presence write failed: user_id={user_id} error={error}",
                     user_id=info.user_id, error=f.getErrorMessage())  # fmt: skip
            self._failed.setdefault(info.session_id, (script, info, args))

        # a failure of what follows a write is not a failed write: it is logged, never retried
        written = self._join_written if script is _JOIN else self._leave_written
        d.addCallbacks(written, failed, callbackArgs=(info,))
        d.addErrback(lambda f: log.failure("after a presence write", failure=f))
        self._track(d)

    def _track(self, d: Deferred[Any]) -> None:
        self._inflight.add(d)
        d.addBoth(lambda result: (self._inflight.discard(d), result)[1])

    async def settled(self) -> None:
        while self._inflight:
            await DeferredList(list(self._inflight))

    def _join_written(self, result: list[Any], info: SessionInfo) -> None:
        old, changed, devices = result
        if int(changed):
            self._changed(info.user_id, sorted(d.decode() for d in devices))
        self._replaced(old, info)

    def _leave_written(self, result: list[Any], info: SessionInfo) -> None:
        changed, devices = result
        if int(changed):
            self._changed(info.user_id, sorted(d.decode() for d in devices))

    def _replaced(self, old: bytes | None, info: SessionInfo) -> None:
        """The device was connected elsewhere: that session ends (mics.close.replaced)."""
        if old is None or self._on_replaced is None:
            return
        data = json.loads(old)
        if data["node"] != self._node_id and int(data["session"]) != info.session_id:
            self._on_replaced(data["node"], int(data["session"]))

    async def reap(self, node_id: str) -> list[dict[str, Any]]:
        keys = self._keys
        removed = await _REAP(
            self._redis, [keys.node_sessions(node_id), keys.watching(node_id)],
            [keys.prefix, node_id, _CHANNEL_PREFIX, self._tenant_id, str(now_ms())],
        )  # fmt: skip
        return [_entry(value) for value in removed]
