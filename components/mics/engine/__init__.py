"""Engines hold and route one tenant's messages; the send service never asks which one it has.

Like Centrifuge's broker (publish to a channel and save to its history stream in one step, and
get the stream position back), an engine holds an inbox message for a user, delivers it to that
user's devices wherever they are connected, and returns the seq it took. Two implementations:

- `MemoryEngine` (memory.py): one node. Presence is the node's session table, the catch-up
  buffer is in memory, deliveries go to this node's router only.
- `RedisEngine` (redis.py): a cluster. Presence and buffers live in Redis; a delivery to a device
  on another node is forwarded there over Redis (for a 1:1 message, by the same script that holds
  it).

The node picks one factory at start-up (`MemoryEngines` or `RedisEngines`); every tenant's
engine comes from it. What the engines share (buffer and presence reads) lives here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from mics.buffer import CatchupBuffer, Sent
from mics.config import TenantConfig
from mics.presence import Presence
from mics.router import RealmPort
from mics.sessions import SessionTable
from mics.types import CHAT, GROUP_CHAT, SyncResult


@dataclass(frozen=True, slots=True)
class Holds:
    """How long (s) an inbox message is held: recipient online, recipient offline, sender's copy."""

    online_s: int
    offline_s: int
    copy_s: int

    @classmethod
    def of(cls, config: TenantConfig) -> Holds:
        return cls(config.replay_window_s, config.offline_ttl_s, config.replay_window_s)


@dataclass(frozen=True, slots=True)
class Held:
    """What `Engine.inbox` did: the recipient's seq, the sender copy's seq, and whether the
    recipient has a device online anywhere."""

    seq: int
    copy_seq: int | None
    online: bool


_CONVERSATION_TYPES = frozenset((CHAT, GROUP_CHAT))


@dataclass(frozen=True, slots=True)
class Conversation:
    """One user's view of a conversation (section 12: an agent's context): the 1:1 chat with `peer`,
    or the group `group_id`. `skip` leaves one message out (the one that triggered the agent)."""

    user_id: str
    peer: str | None = None
    group_id: str | None = None
    skip: str | None = None

    def holds(self, entry: dict[str, Any]) -> bool:
        """Whether a held inbox entry is a chat message of this conversation (not recalled)."""
        if entry.get("type") not in _CONVERSATION_TYPES or entry.get("recalled") or entry.get("msg_id") == self.skip:
            return False
        if self.group_id is not None:
            return entry.get("group_id") == self.group_id
        pair = (entry.get("from_user_id"), entry.get("to_user_id"))
        return entry.get("group_id") is None and pair in ((self.user_id, self.peer), (self.peer, self.user_id))


class Engine(ABC):
    """Holding and routing for one tenant (see the module docstring)."""

    # errors of the shared store that mean "unreachable, retry" (mics.error.unavailable)
    transient_errors: ClassVar[tuple[type[BaseException], ...]] = ()

    def __init__(
        self, tenant_id: str, node_id: str, sessions: SessionTable, port: RealmPort, buffer: CatchupBuffer,
        presence: Presence,
    ) -> None:  # fmt: skip
        self.tenant_id = tenant_id
        self.node_id = node_id
        self.sessions = sessions
        self.port = port
        self.buffer = buffer
        self.presence = presence

    @abstractmethod
    async def inbox(
        self, to_user_id: str, copy_for: str | None, exclude: int | None, message: dict[str, Any], size: int,
        holds: Holds, remember_s: float = 0,
    ) -> Held:  # fmt: skip
        """Hold `message` in `to_user_id`'s inbox (next seq; held for the online or the offline time)
        and deliver it to their devices; with `copy_for`, hold a copy in that user's inbox too and
        deliver it to their devices. `exclude` (the sending session) gets neither. Deliveries carry
        their seq; `message` itself is not changed. With `remember_s`, the sender index records the
        message and its held copies for that long (recall and edit), in the same step."""

    @abstractmethod
    async def group(self, topic: str, members: Sequence[str], exclude: int | None, message: dict[str, Any]) -> None:
        """Deliver live to the members' sessions subscribed to `topic`, on every node."""

    async def stream(self, topic: str, members: Sequence[str], message: dict[str, Any]) -> None:
        """Deliver live like `group`, and return once every node will see it before anything this node
        delivers after it returned (section 12: an agent's chunks, then its final message, in order
        everywhere). One node: at once."""
        await self.group(topic, members, None, message)

    @abstractmethod
    async def live(self, to_user_id: str, exclude: int | None, message: dict[str, Any]) -> bool:
        """Deliver to the user's online devices, never held; returns whether any was online."""

    @abstractmethod
    async def kick_elsewhere(self, user_id: str, device_id: str | None) -> int:
        """Ask other nodes to end the user's (or one device's) sessions there; returns how many."""

    @abstractmethod
    async def claim_once(self, key: str, ttl_s: float) -> bool:
        """True the first time `key` is claimed within `ttl_s` on any node (replay protection)."""

    def deliver_local(self, topic: str, authids: Sequence[str], exclude: int | None, message: dict[str, Any]) -> None:
        """Deliver to this node's sessions only (what another node forwarded here)."""
        self.port.deliver(topic, authids, exclude, message)

    async def hold(
        self, user_ids: list[str], message: dict[str, Any], size: int, hold_s: int
    ) -> tuple[tuple[str, int], ...]:
        """Hold a copy of `message` in each user's inbox (each takes that user's next seq); returns
        the (user, seq) of each copy."""
        seqs = await self.buffer.append_many(user_ids, message, size, hold_s)
        return tuple(zip(user_ids, seqs, strict=True))

    # -- the sender index (section 11: recall and edit) ------------------------------------------
    async def remember_sent(self, message: dict[str, Any], held: tuple[tuple[str, int], ...], keep_s: float) -> None:
        """Record a message the inbox path did not record (group sends) in the sender index."""
        await self.buffer.remember_sent(sent_of(message, held), keep_s)

    async def sent(self, msg_id: str) -> Sent | None:
        return await self.buffer.sent(msg_id)

    async def amend(self, sent: Sent, patch: dict[str, Any], size: int, recall: bool) -> bool:
        """Change the held copies of `sent` in place (a recall's tombstone, an edit's body); False
        when it was recalled meanwhile or is gone."""
        return await self.buffer.amend(sent, patch, size, recall)

    async def sync(self, user_id: str, since_seq: int, epoch: str | None) -> SyncResult:
        return await self.buffer.since(user_id, since_seq, epoch)

    async def recent(self, conversation: Conversation, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` messages of the conversation held in the user's inbox, oldest first."""
        return await self.buffer.recent(conversation.user_id, limit, conversation.holds)

    async def seen(self, user_id: str, client_msg_id: str) -> dict[str, Any] | None:
        return await self.buffer.seen(user_id, client_msg_id)

    async def remember(self, user_id: str, client_msg_id: str, ack: dict[str, Any]) -> None:
        await self.buffer.remember(user_id, client_msg_id, ack)

    async def devices_elsewhere(self, user_id: str, device_id: str) -> int:
        """The user's devices connected to other nodes, `device_id` excepted (it would move here, not
        add a connection): what the per-user connection limit counts beside this node's."""
        return 0

    async def online_among(self, user_ids: Sequence[str]) -> set[str]:
        return await self.presence.online_among(user_ids)

    async def any_online(self, user_ids: Sequence[str]) -> bool:
        return await self.presence.any_online(user_ids)

    def configure(self, config: TenantConfig) -> None:
        """The tenant's config changed: new buffer caps."""
        self.buffer.configure(config.offline_max_per_user, config.offline_max_bytes)


def sent_of(message: dict[str, Any], held: tuple[tuple[str, int], ...] = ()) -> Sent:
    """The sender index record of a message (its kwargs) and its held copies."""
    return Sent(message["msg_id"], message["from_user_id"], message.get("to_user_id"), message.get("group_id"),
                message["ts"], held)  # fmt: skip


class EngineFactory(ABC):
    """Makes each tenant's engine; the node picks one factory at start-up."""

    transient_errors: ClassVar[tuple[type[BaseException], ...]] = ()

    @abstractmethod
    def make(
        self, tenant_id: str, config: TenantConfig, sessions: SessionTable, port: RealmPort,
        clock: Callable[[], float],
    ) -> Engine:  # fmt: skip
        """A new engine for the tenant."""

    def relay(self, tenant_id: str, port: RealmPort, reactor: Any) -> Any:
        """Cluster mode: the realm's cross-node WAMP (mics.cluster.relay.WampRelay); None on one node,
        where the realm's router alone serves every session."""
        return None
