"""A client for the backend HTTP API of MICS (protocol.md section 13), for tenant backends that
are plain web services and hold no WAMP session.

Every request is a signed POST to `{base_url}/api/v1/{tenant_id}/{action}` (the same signature as
hook requests, with the tenant secret). It uses only the standard library and blocks while it
waits, so call it from a web handler or a worker thread (or wrap it in your framework's executor).

    client = MicsHttpClient("https://mics.example.com", "acme", secret)
    ack = client.send("bob", {"text": "your order shipped"}, from_user_id="shop")
    client.kick("mallory")

A refused call raises the typed error of `mics_client.errors` for its URI (e.g. `RateLimited`,
`PayloadTooLarge`), or a plain `MicsError` for HTTP-level refusals (`mics.error.bad_signature`,
`mics.error.not_found`). Bodies travel as JSON: bytes bodies need a WAMP session.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from mics_client.errors import MicsError, from_wamp
from mics_client.signing import sign_headers


class MicsHttpClient:
    """Signed calls to one tenant's backend HTTP API on a MICS node (any node of a cluster)."""

    def __init__(self, base_url: str, tenant_id: str, secret: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.tenant_id = tenant_id
        self._secret = secret
        self.timeout = timeout

    def call(self, action: str, **fields: Any) -> Any:
        """POST one action with `fields` (None values are left out); returns its result."""
        body = json.dumps({k: v for k, v in fields.items() if v is not None}, separators=(",", ":")).encode()
        headers = {**sign_headers(self.tenant_id, self._secret, body), "Content-Type": "application/json"}
        url = f"{self.base_url}/api/v1/{quote(self.tenant_id, safe='')}/{action}"
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as e:
            raise _error(e.code, e.read()) from None

    def send(self, to_user_id: str, body: Any, from_user_id: str, *, client_msg_id: str | None = None,
             content_type: str | None = None) -> dict[str, Any]:  # fmt: skip
        """A system message to a user (type `system`, from `from_user_id`); returns the Ack."""
        return self.call("send", to_user_id=to_user_id, body=body, from_user_id=from_user_id,  # type: ignore[no-any-return]
                         client_msg_id=client_msg_id, content_type=content_type)  # fmt: skip

    def group_send(self, group_id: str, body: Any, from_user_id: str | None = None, *,
                   client_msg_id: str | None = None, content_type: str | None = None) -> dict[str, Any]:  # fmt: skip
        """A system message to a group's members; returns the Ack with `recipients`."""
        return self.call("group-send", group_id=group_id, body=body, from_user_id=from_user_id,  # type: ignore[no-any-return]
                         client_msg_id=client_msg_id, content_type=content_type)  # fmt: skip

    def members_changed(self, group_id: str, added: Iterable[str] = (), removed: Iterable[str] = ()) -> dict[str, Any]:
        """Tell MICS (and the group's online members) who joined and left a group."""
        return self.call("members-changed", group_id=group_id, added=list(added), removed=list(removed))  # type: ignore[no-any-return]

    def kick(self, user_id: str, device_id: str | None = None) -> int:
        """End the user's sessions (or one device's) on every node; returns how many."""
        return int(self.call("kick", user_id=user_id, device_id=device_id)["kicked"])

    def sessions(self, user_id: str | None = None) -> list[dict[str, Any]]:
        """The tenant's live sessions (or one user's), on every node."""
        return list(self.call("sessions", user_id=user_id)["sessions"])

    def presence(self, user_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """`{user_id: {"online": bool, "devices": [...]}}` for up to 100 users."""
        return dict(self.call("presence", user_ids=list(user_ids)))


def _error(status: int, raw: bytes) -> MicsError:
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or not isinstance(answer.get("error"), str):
        return MicsError(f"HTTP {status}", uri="mics.client.http_error", code=status, kwargs={})
    return from_wamp(answer["error"], answer.get("message"), answer)
