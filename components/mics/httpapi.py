"""The backend HTTP API (protocol.md section 13): `POST /api/v1/{tenant_id}/{action}`.

For tenant backends that are plain web services and hold no WAMP session. A request is signed
exactly like a hook request (the hook SDKs' verifier: X-Mics-Timestamp, X-Mics-Nonce,
X-Mics-Signature over the raw body, with the tenant secret), and its nonce is claimed through the
tenant's engine, so a replay is refused on every node of a cluster. Each action is the backend
procedure of the same name, with the same request parsing, send service and error mapping
(mics.procedures.expose): the answer is the procedure's result as JSON, or the MICS error as
`{"error": uri, "code", "message"}` with the HTTP status = its code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import ensureDeferred
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from txaio import make_logger

from mics import errors, metrics, requests
from mics.errors import MicsError
from mics.hooks.signing import HEADER_TENANT, MAX_SKEW_MS, SignatureError, SignatureVerifier
from mics.node import NODE
from mics.procedures import expose
from mics.service import SendService
from mics.tenants import TenantRuntime
from mics.types import Sender

log = make_logger()

MAX_BODY_BYTES = 1024 * 1024
_SYSTEM_SENDER = "backend"

# action -> (request parser, service method)
ACTIONS: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
    "send": (requests.SendRequest.parse, SendService.send),
    "group-send": (requests.GroupSendRequest.parse, SendService.group_send),
    "members-changed": (requests.MembersChangedRequest.parse, SendService.members_changed),
    "kick": (requests.SessionKickRequest.parse, SendService.session_kick),
    "sessions": (requests.SessionListRequest.parse, SendService.session_list),
    "presence": (requests.PresenceRequest.parse, SendService.presence),
}


class ApiError(Exception):
    """A refusal before any procedure runs: bad signature, unknown tenant or action, unreadable body."""

    def __init__(self, what: errors.Reason, message: str) -> None:
        super().__init__(message)
        self.what = what


class BackendApiResource(Resource):
    """Mounted at `/api` on the node's web transport (router config, `"type": "resource"`)."""

    isLeaf = True

    def __init__(self, extra: dict[str, Any] | None = None) -> None:
        super().__init__()
        self._verifiers: dict[str, tuple[str, SignatureVerifier]] = {}  # tenant -> (secret, verifier)
        self._calls: dict[tuple[str, str], Callable[..., Any]] = {}

    def render_POST(self, request: Request) -> Any:
        ensureDeferred(self._handle(request))
        return NOT_DONE_YET

    def render_GET(self, request: Request) -> bytes:
        request.setResponseCode(405)
        request.setHeader(b"allow", b"POST")
        request.setHeader(b"content-type", b"application/json")
        return _json({"error": errors.NOT_FOUND.uri, "code": 405, "message": "use POST /api/v1/{tenant_id}/{action}"})

    async def _handle(self, request: Request) -> None:
        tenant_id, action = "-", "-"
        try:
            tenant_id, action = _route(request.postpath)
            status, answer = 200, await self._answer(request, tenant_id, action)
        except ApiError as e:
            status, answer = e.what.code, {"error": e.what.uri, "code": e.what.code, "message": str(e)}
        except MicsError as e:
            code = int(e.kwargs.get("code", 500))
            status = code if 400 <= code <= 599 else 500
            answer = {"error": e.error, **e.kwargs}
        known = NODE.tenants is not None and NODE.tenants.get(tenant_id) is not None
        metrics.HTTP_API.labels(tenant_id if known else "-", action if action in ACTIONS else "-", str(status)).inc()
        if getattr(request, "_disconnected", False):
            return
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        request.write(_json(answer))
        request.finish()

    async def _answer(self, request: Request, tenant_id: str, action: str) -> Any:
        length = request.getHeader(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            raise ApiError(errors.PAYLOAD_TOO_LARGE, f"the body must be at most {MAX_BODY_BYTES} bytes")
        body = request.content.read(MAX_BODY_BYTES + 1)
        if len(body) > MAX_BODY_BYTES:
            raise ApiError(errors.PAYLOAD_TOO_LARGE, f"the body must be at most {MAX_BODY_BYTES} bytes")
        tenant = await NODE.find_tenant(tenant_id)
        if tenant is None or not tenant.enabled:
            raise ApiError(errors.NOT_FOUND, f"no tenant {tenant_id!r}")
        if action not in ACTIONS:
            raise ApiError(errors.NOT_FOUND, f"no action {action!r}; actions: {', '.join(ACTIONS)}")
        await self._verify(tenant, request, body)
        try:
            fields = json.loads(body)
        except ValueError:
            raise ApiError(errors.INVALID_MESSAGE, "the body is not JSON") from None
        if not isinstance(fields, dict):
            raise ApiError(errors.INVALID_MESSAGE, "the body must be a JSON object of the action's arguments")
        return await self._call(tenant, action)(**fields)

    async def _verify(self, tenant: TenantRuntime, request: Request, body: bytes) -> None:
        headers = {k.decode("latin-1"): v[0].decode("latin-1") for k, v in request.requestHeaders.getAllRawHeaders()}
        claimed_tenant = headers.get(HEADER_TENANT) or headers.get(HEADER_TENANT.lower())
        if claimed_tenant is not None and claimed_tenant != tenant.tenant_id:
            raise ApiError(errors.BAD_SIGNATURE, "X-Mics-Tenant names another tenant")
        try:
            nonce = self._verifier(tenant).check_signature(headers, body)
        except SignatureError as e:
            raise ApiError(errors.BAD_SIGNATURE, str(e)) from None
        if not await tenant.engine.claim_once("api:" + nonce, 2 * MAX_SKEW_MS / 1000):
            raise ApiError(errors.BAD_SIGNATURE, "nonce seen before (a replayed request)")

    def _verifier(self, tenant: TenantRuntime) -> SignatureVerifier:
        """One verifier per tenant, made again when its secret changes."""
        secret = tenant.config.secret
        known = self._verifiers.get(tenant.tenant_id)
        if known is None or known[0] != secret:
            known = self._verifiers[tenant.tenant_id] = (secret, SignatureVerifier(secret))
        return known[1]

    def _call(self, tenant: TenantRuntime, action: str) -> Callable[..., Any]:
        call = self._calls.get((tenant.tenant_id, action))
        if call is None:
            parse, method = ACTIONS[action]
            service = tenant.service

            async def handle(request: Any, _details: Any) -> Any:
                sender = Sender(getattr(request, "from_user_id", None) or _SYSTEM_SENDER, None, 0, True)
                return await method(service, sender, request)

            limited = requests.bounded(parse, lambda: tenant.config.max_payload_bytes)
            call = expose("api." + action, limited, handle, tenant.tenant_id, tenant.engine.transient_errors)
            self._calls[(tenant.tenant_id, action)] = call
        return call


def _route(postpath: list[bytes]) -> tuple[str, str]:
    """`v1/{tenant_id}/{action}` under the mount point."""
    parts = [p.decode("utf-8", "replace") for p in postpath]
    if len(parts) != 3 or parts[0] != "v1":
        raise ApiError(errors.NOT_FOUND, "use POST /api/v1/{tenant_id}/{action}")
    return parts[1], parts[2]


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
