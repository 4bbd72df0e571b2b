"""Hooks as WAMP procedures that the tenant's backend session registers in its own realm."""

from __future__ import annotations

from typing import Any, Protocol

from autobahn.wamp.exception import ApplicationError

from mics import uris
from mics.errors import INVALID_TOKEN
from mics.hooks import (
    AuthReply,
    BatchUnsupported,
    Hook,
    HookFailure,
    HookRejected,
    Verdict,
    parse_auth_reply,
    parse_check_reply,
    parse_members_reply,
    parse_verdicts_reply,
)
from mics.router import NoRealmSession


class Caller(Protocol):
    """What the hook needs of the realm: `call` (mics.router.RealmPort)."""

    def call(self, procedure: str, *args: Any, **kwargs: Any) -> Any: ...


class WampHook(Hook):
    """Calls mics.hook.* in the tenant realm as our router-embedded component (no network hop)."""

    def __init__(self, tenant_id: str, session: Caller) -> None:
        self.tenant_id = tenant_id
        self._session = session

    async def _call(self, procedure: str, **kwargs: Any) -> Any:
        try:
            return await self._session.call(procedure, **kwargs)
        except NoRealmSession:
            raise HookFailure(f"{procedure}: the realm component has not joined") from None
        except ApplicationError as e:
            if procedure == uris.HOOK_AUTH and e.error == INVALID_TOKEN.uri:
                raise HookRejected(e.error_message()) from None
            if procedure == uris.HOOK_CHECK_MESSAGES and e.error == ApplicationError.NO_SUCH_PROCEDURE:
                raise BatchUnsupported(f"{procedure}: {e.error}") from None
            raise HookFailure(f"{procedure}: {e.error}") from None

    async def auth(self, token: str, device_id: str) -> AuthReply:
        reply = await self._call(uris.HOOK_AUTH, token=token, device_id=device_id, tenant_id=self.tenant_id)
        return parse_auth_reply(reply)

    async def check_message(self, message: dict[str, Any]) -> Verdict:
        return parse_check_reply(await self._call(uris.HOOK_CHECK_MESSAGE, **message))

    async def check_messages(self, messages: list[dict[str, Any]], timeout_ms: int) -> list[Verdict | None]:
        reply = await self._call(uris.HOOK_CHECK_MESSAGES, messages=messages, timeout_ms=timeout_ms)
        return parse_verdicts_reply(reply, len(messages))

    async def group_members(self, group_id: str, from_user_id: str) -> list[str]:
        reply = await self._call(
            uris.HOOK_GROUP_MEMBERS, group_id=group_id, from_user_id=from_user_id, tenant_id=self.tenant_id
        )
        return parse_members_reply(reply)
