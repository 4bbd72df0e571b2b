"""Serve a tenant's hooks over signed HTTP (Twisted web): POST /auth, /check-message, /check-messages (batched
checks), /get-group-members, and the `@agent` methods of the hooks object at POST /agents/<agent_id> (an
NDJSON stream).

Every request's signature is verified (HMAC-SHA256 over timestamp.nonce.body, 5-minute skew, nonces
remembered to refuse replays) before your `Hooks` run; JSON and protobuf bodies are both understood and
answered in the request's encoding.

    server = HookServer(MyHooks(), secret, port=8090)   # hook_base_url: http://HOST:8090/
    await server.stop()
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import ensureDeferred, maybeDeferred
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from mics_client.hooks import (
    Hooks,
    RejectToken,
    auth_reply,
    check_replies,
    check_reply,
    codec,
    members_reply,
    resolve,
)
from mics_client.hooks.agents import NDJSON, agents_of, ndjson_line, parse_request, run_agent
from mics_client.signing import SignatureError, SignatureVerifier

log = Logger()

PATHS = {b"auth": "auth", b"check-message": "check_message", b"check-messages": "check_messages",
         b"get-group-members": "group_members"}  # fmt: skip


class HookResource(Resource):
    """A leaf resource answering the three hook paths under wherever it is mounted."""

    isLeaf = True

    def __init__(self, hooks: Hooks, secret: str, verifier: SignatureVerifier | None = None) -> None:
        super().__init__()
        self.hooks = hooks
        self.agents = agents_of(hooks)
        self.verifier = verifier or SignatureVerifier(secret)
        #: counters a tenant may export: requests per hook, agent calls, refused signatures
        self.stats: dict[str, int] = dict.fromkeys(
            ("auth", "check_message", "check_messages", "group_members", "agents", "bad_signature"), 0
        )

    def render_POST(self, request: Any) -> Any:
        ensureDeferred(self._handle(request))
        return NOT_DONE_YET

    async def _handle(self, request: Any) -> None:
        body = request.content.read()
        headers = {k.decode("latin-1"): v[0].decode("latin-1") for k, v in request.requestHeaders.getAllRawHeaders()}
        path = request.postpath
        if len(path) >= 2 and path[-2] == b"agents":
            await self._agent(request, path[-1].decode("utf-8", "replace"), headers, body)
            return
        hook = PATHS.get(path[-1] if path else b"")
        status, out, content_type = 404, b"", "text/plain"
        if hook is not None:
            status, out, content_type = await self._answer(hook, headers, body)
        request.setResponseCode(status)
        request.setHeader(b"content-type", content_type.encode("ascii"))
        if not getattr(request, "_disconnected", False):
            request.write(out)
            request.finish()

    async def _agent(self, request: Any, agent_id: str, headers: dict[str, str], body: bytes) -> None:
        """`POST .../agents/<agent_id>` (section 12): the answer as NDJSON, each piece as it comes."""
        fn = self.agents.get(agent_id)
        try:
            self.verifier.verify(headers, body)
            call = parse_request(body)
        except SignatureError as e:
            self.stats["bad_signature"] += 1
            log.warn("agent request refused: {why}", why=str(e), agent_id=agent_id)
            fn, status = None, 401
        except ValueError:
            fn, status = None, 400
        else:
            status = 200 if fn is not None else 404
        request.setResponseCode(status)
        if fn is None:
            request.finish()
            return
        self.stats["agents"] += 1
        request.setHeader(b"content-type", NDJSON.encode("ascii"))
        gone = request.notifyFinish().addErrback(lambda _f: None)  # the node hung up (timed out, cancelled)

        def emit(delta: Any) -> None:
            if gone.called:
                raise _HungUp()  # stops the agent function
            request.write(ndjson_line({"delta": delta}))

        try:
            answer = await run_agent(fn, call, emit)
        except _HungUp:
            return
        except Exception:
            log.failure("agent {agent_id} failed", agent_id=agent_id)
            answer = {"error": "the agent failed"}  # the status went out already: say it in the stream
        if not gone.called:
            request.write(ndjson_line(answer))
            request.finish()

    async def _answer(self, hook: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes, str]:
        try:
            self.verifier.verify(headers, body)
        except SignatureError as e:
            self.stats["bad_signature"] += 1
            log.warn("hook request refused: {why}", why=str(e), hook=hook)
            return 401, b"bad signature", "text/plain"
        self.stats[hook] += 1
        content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), codec.JSON)
        encoding = "protobuf" if content_type.startswith(codec.PROTOBUF) else "json"
        try:
            fields = codec.decode_request(hook, body, content_type)
            tenant_id = fields.get("tenant_id", "")
            if hook == "auth":
                answer = self.hooks.auth(fields.get("token", ""), fields.get("device_id", ""), tenant_id)
                reply = auth_reply(await resolve(answer))
            elif hook == "check_message":
                reply = check_reply(await resolve(self.hooks.check_message(fields)))
            elif hook == "check_messages":
                batch = list(fields.get("messages") or [])
                answer = self.hooks.check_messages(batch, fields.get("timeout_ms") or None)
                reply = check_replies(await resolve(answer), len(batch))
            else:
                answer = self.hooks.group_members(fields.get("group_id", ""), fields.get("from_user_id", ""), tenant_id)
                reply = members_reply(await resolve(answer))
        except RejectToken as e:
            return 401, e.message.encode("utf-8"), "text/plain"
        except Exception:
            log.failure("hook {hook} failed", hook=hook)
            return 500, b"hook failed", "text/plain"
        out, out_type = codec.encode_response(hook, reply, encoding)
        return 200, out, out_type


class _HungUp(Exception):
    """The node closed an agent's stream before it ended."""


class HookServer:
    """Listens on `interface:port` (0 = a free port) and serves `hooks`; `base_url` is the tenant's hook_base_url."""

    def __init__(self, hooks: Hooks, secret: str, port: int = 0, interface: str = "127.0.0.1",
                 reactor: Any = None) -> None:  # fmt: skip
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.resource = HookResource(hooks, secret)
        self._site = Site(self.resource)
        self._port = reactor.listenTCP(port, self._site, interface=interface)

    @property
    def port(self) -> int:
        return int(self._port.getHost().port)

    @property
    def base_url(self) -> str:
        host = self._port.getHost()
        return f"http://{host.host}:{host.port}/"

    async def stop(self) -> None:
        await maybeDeferred(self._port.stopListening)
