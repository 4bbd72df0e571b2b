"""The demo tenant's backend, run inside the node on the embedded default.

Tokens are `demo-<user_id>` (or just the user id), so anyone can try MICS in a minute. Groups:
`lobby` (every demo user who ever connected) and `team` (alice, bob, carol). One AI agent, `assistant`
(protocol.md section 12), a deterministic local bot that needs no AI service: it streams your words
back one by one, then counts them. A real tenant runs this logic in its own service: see examples/
(examples/echo_agent.py is the same kind of bot on the SDK) and docs/agents.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from autobahn.wamp.exception import ApplicationError
from twisted.internet import reactor, task

from mics import errors, uris
from mics.config import is_valid_entity_id
from mics.procedures import MicsSession
from mics_client.hooks.agents import AgentRequest, agent, register_agents

TEAM = ["alice", "bob", "carol"]
WORD_DELAY_S = 0.08  # the bot "types": its answer grows word by word on the page


class DemoBackend(MicsSession):
    async def onJoin(self, details: Any) -> None:
        self.known: dict[str, None] = dict.fromkeys(TEAM)
        await self.register(self.auth, uris.HOOK_AUTH)
        await self.register(self.check_message, uris.HOOK_CHECK_MESSAGE)
        await self.register(self.group_members, uris.HOOK_GROUP_MEMBERS)
        await register_agents(self, self)

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

    @agent("assistant")
    async def bot(self, request: AgentRequest) -> AsyncIterator[str]:
        """Your words back one by one, then how many there were and how much of the chat it saw."""
        words = request.text.split() or ["(nothing", "to", "echo)"]
        earlier = len(request.context)
        summary = ["—", f"{len(words)} words;", f"{earlier} earlier", "message" if earlier == 1 else "messages",
                   "in", "this", "chat."]  # fmt: skip
        for n, word in enumerate([*words, *summary]):
            if n:
                await task.deferLater(reactor, WORD_DELAY_S, lambda: None)
            yield word if n == 0 else " " + word
