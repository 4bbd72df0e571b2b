"""The demo tenant's backend, run inside the node on the embedded default.

Tokens are `demo-<user_id>` (or just the user id), so anyone can try MICS in a minute. Groups:
`lobby` (every demo user who ever connected) and `team` (alice, bob, carol). A real tenant runs
this logic in its own service: see examples/ and docs/tenants.md.
"""

from __future__ import annotations

from typing import Any

from autobahn.wamp.exception import ApplicationError

from mics import errors, uris
from mics.config import is_valid_entity_id
from mics.procedures import MicsSession

TEAM = ["alice", "bob", "carol"]


class DemoBackend(MicsSession):
    async def onJoin(self, details: Any) -> None:
        self.known: dict[str, None] = dict.fromkeys(TEAM)
        await self.register(self.auth, uris.HOOK_AUTH)
        await self.register(self.check_message, uris.HOOK_CHECK_MESSAGE)
        await self.register(self.group_members, uris.HOOK_GROUP_MEMBERS)

    def auth(self, token: str = "", device_id: str = "", tenant_id: str = "", **_: Any) -> dict[str, Any]:
        user_id = token.removeprefix("demo-")
        if not is_valid_entity_id(user_id) or len(user_id) > 32:
            raise ApplicationError(errors.INVALID_TOKEN.uri, "demo tokens are 'demo-<name>'")
        self.known[user_id] = None
        return {"user_id": user_id}

    def check_message(self, **message: Any) -> dict[str, Any]:
        body = message.get("body")
        if isinstance(body, dict) and "forbidden" in str(body.get("text", "")).lower():
            return {"allow": False, "reason": "the demo refuses the word 'forbidden'"}
        return {"allow": True}

    def group_members(self, group_id: str = "", **_: Any) -> dict[str, Any]:
        if group_id == "lobby":
            return {"members": list(self.known)}
        if group_id == "team":
            return {"members": TEAM}
        return {"members": []}
