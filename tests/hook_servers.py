"""Tenant hook servers for tests, over both transports, with switchable behaviour.

`HookLogic` is the tenant's business logic (tokens `tok-<user>`, groups from a dict, a check that
refuses the word "forbidden") plus knobs a test turns: delays, failures, garbage answers. `WampHookBackend` serves
it from a real backend session (wampcra); `HttpHookServer` from a real Twisted HTTP server on a
free port, verifying every request's signature as a tenant would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import RegisterOptions
from twisted.internet import reactor
from twisted.internet.defer import FirstError, ensureDeferred, gatherResults, maybeDeferred
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from mics.hooks import codec
from mics.hooks.signing import SignatureError, SignatureVerifier
from wamp_clients import TestSession, backend, sleep

GARBAGE = ["not", {"a": "hook reply"}, 7]  # what a broken hook answers (over HTTP: not even JSON)


@dataclass
class HookLogic:
    groups: dict[str, list[str]] = field(default_factory=dict)
    auth_delay: float = 0.0
    check_delay: float = 0.0
    members_delay: float = 0.0
    auth_fail: bool = False
    check_fail: bool = False
    members_fail: bool = False
    garbage: bool = False  # every hook answers something that is not a hook reply
    auth_config: dict[str, Any] | None = None
    batch_hook: bool = True  # False: a backend of before batched checks (no mics.hook.check_messages)
    calls: dict[str, int] = field(
        default_factory=lambda: {"auth": 0, "check_message": 0, "check_messages": 0, "group_members": 0}
    )
    seen_messages: list[dict[str, Any]] = field(default_factory=list)
    batches: list[int] = field(default_factory=list)  # the size of each batched check

    async def auth(self, token: str, device_id: str, tenant_id: str) -> dict[str, Any] | None:
        """None means: bad token."""
        self.calls["auth"] += 1
        if self.auth_delay:
            await sleep(self.auth_delay)
        if self.auth_fail:
            raise RuntimeError("auth hook broken")
        if self.garbage:
            return GARBAGE  # type: ignore[return-value]
        if not token.startswith("tok-"):
            return None
        reply: dict[str, Any] = {"user_id": token[4:]}
        if self.auth_config:
            reply["config"] = self.auth_config
        return reply

    async def check_message(self, message: dict[str, Any]) -> dict[str, Any]:
        self.calls["check_message"] += 1
        self.seen_messages.append(message)
        if self.check_delay:
            await sleep(self.check_delay)
        if self.check_fail:
            raise RuntimeError("check hook broken")
        if self.garbage:
            return GARBAGE  # type: ignore[return-value]
        if "forbidden" in str(message.get("body")):
            return {"allow": False, "reason": "contains a forbidden word"}
        return {"allow": True}

    async def check_messages(self, messages: list[dict[str, Any]], timeout_ms: int = 0) -> dict[str, Any]:
        """The batched check: each message as check_message would, all at once; one failure fails it all."""
        self.calls["check_messages"] += 1
        self.batches.append(len(messages))
        checks = [ensureDeferred(self.check_message(m)) for m in messages]
        try:
            verdicts = await gatherResults(checks, consumeErrors=True)
        except FirstError as e:
            raise e.subFailure.value from None
        return {"verdicts": verdicts}

    async def group_members(self, group_id: str, from_user_id: str, tenant_id: str) -> dict[str, Any]:
        self.calls["group_members"] += 1
        if self.members_delay:
            await sleep(self.members_delay)
        if self.members_fail:
            raise RuntimeError("members hook broken")
        if self.garbage:
            return GARBAGE  # type: ignore[return-value]
        return {"members": list(self.groups.get(group_id, []))}


async def wamp_backend(
    url: str, tenant_id: str, secret: str, logic: HookLogic, serializer: str = "json", invoke: str | None = None
) -> TestSession:
    """A tenant backend session registering mics.hook.* backed by `logic`.

    `invoke` (e.g. "roundrobin") shares the registrations among several backend processes."""
    session = await backend(url, tenant_id, secret, serializer=serializer)
    options = RegisterOptions(invoke=invoke) if invoke else None

    async def auth(token: str = "", device_id: str = "", tenant_id: str = "", **_: Any) -> dict[str, Any]:
        reply = await logic.auth(token, device_id, tenant_id)
        if reply is None:
            raise ApplicationError("mics.error.invalid_token", "bad token")
        return reply

    async def check(**message: Any) -> dict[str, Any]:
        return await logic.check_message(message)

    async def check_batch(messages: list[dict[str, Any]], timeout_ms: int = 0, **_: Any) -> dict[str, Any]:
        return await logic.check_messages(messages, timeout_ms)

    async def members(group_id: str = "", from_user_id: str = "", tenant_id: str = "", **_: Any) -> dict[str, Any]:
        return await logic.group_members(group_id, from_user_id, tenant_id)

    await session.register(auth, "mics.hook.auth", options=options)
    await session.register(check, "mics.hook.check_message", options=options)
    if logic.batch_hook:
        await session.register(check_batch, "mics.hook.check_messages", options=options)
    await session.register(members, "mics.hook.group_members", options=options)
    return session


class _HookResource(Resource):
    isLeaf = True
    HOOKS = {b"/hooks/auth": "auth", b"/hooks/check-message": "check_message",
             b"/hooks/check-messages": "check_messages", b"/hooks/get-group-members": "group_members"}  # fmt: skip

    def __init__(self, server: HttpHookServer) -> None:
        super().__init__()
        self.server = server

    def render_POST(self, request: Any) -> Any:
        ensureDeferred(self._handle(request))
        return NOT_DONE_YET

    async def _handle(self, request: Any) -> None:
        server = self.server
        body = request.content.read()
        headers = {k.decode(): v[0].decode() for k, v in request.requestHeaders.getAllRawHeaders()}
        server.requests.append((request.path.decode(), headers, body))
        hook = self.HOOKS.get(request.path)
        if hook == "check_messages" and not server.logic.batch_hook:
            hook = None
        status, reply = 404, None
        try:
            server.verifier.verify(headers, body)
        except SignatureError as e:
            server.signature_errors.append(str(e))
            status = 401
            hook = None
        if hook is not None and server.logic.garbage:
            request.setResponseCode(200)
            request.setHeader(b"content-type", b"application/json")
            request.write(b"\xff<html>this is not a hook reply")
            request.finish()
            return
        if hook is not None:
            try:
                fields = codec.decode_request(hook, body, headers.get("Content-Type", codec.JSON))
                if hook == "auth":
                    reply = await server.logic.auth(**fields)
                    status = 200 if reply is not None else 401
                elif hook == "check_message":
                    status, reply = 200, await server.logic.check_message(fields)
                elif hook == "check_messages":
                    status, reply = 200, await server.logic.check_messages(fields["messages"], fields["timeout_ms"])
                else:
                    status, reply = 200, await server.logic.group_members(**fields)
            except Exception:
                status = 500
        request.setResponseCode(status)
        if status == 200 and reply is not None:
            out, content_type = codec.encode_response(hook, reply, server.encoding)  # type: ignore[arg-type]
            request.setHeader(b"content-type", content_type.encode())
            request.write(out)
        if not request.finished and not getattr(request, "_disconnected", False):
            request.finish()


class HttpHookServer:
    """Serves /auth, /check-message, /check-messages, /get-group-members on 127.0.0.1 (free port)."""

    def __init__(self, secret: str, logic: HookLogic, encoding: str = "json") -> None:
        self.logic = logic
        self.encoding = encoding
        self.verifier = SignatureVerifier(secret)
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.signature_errors: list[str] = []
        self._site = TrackingSite(_HookResource(self))
        self._port = reactor.listenTCP(0, self._site, interface="127.0.0.1")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port.getHost().port}/hooks/"

    async def stop(self) -> None:
        """Stop listening and drop kept-alive connections: the hook is really gone."""
        await maybeDeferred(self._port.stopListening)
        for transport in list(self._site.live):
            transport.abortConnection()


class TrackingSite(Site):
    def __init__(self, resource: Resource) -> None:
        super().__init__(resource)
        self.live: set[Any] = set()

    def buildProtocol(self, addr: Any) -> Any:
        """Remember each connection's transport so `stop` can drop it."""
        protocol = super().buildProtocol(addr)
        make_connection = protocol.makeConnection

        def track(transport: Any) -> None:
            self.live.add(transport)
            make_connection(transport)

        protocol.makeConnection = track
        return protocol
