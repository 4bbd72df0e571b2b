"""The HTTP hook transport against a real local HTTP server: a signed request goes to hook_base_url
and nowhere else (a redirect is a failure, not followed), and hostile or broken answers are failures."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import maybeDeferred
from twisted.web.resource import Resource
from twisted.web.server import Site

from mics.hooks import HookFailure
from mics.hooks.http import MAX_REPLY_BYTES, HttpHook


class Answers(Resource):
    """Answers every POST with what the test set; records the paths it was asked."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []
        self.status = 200
        self.body = b'{"allow": true}'
        self.headers: dict[bytes, bytes] = {b"content-type": b"application/json"}

    def render_POST(self, request: Any) -> bytes:
        self.paths.append(request.path.decode())
        request.setResponseCode(self.status)
        for name, value in self.headers.items():
            request.setHeader(name, value)
        return self.body


@pytest.fixture
def server():
    answers = Answers()
    port = reactor.listenTCP(0, Site(answers), interface="127.0.0.1")
    answers.base_url = f"http://127.0.0.1:{port.getHost().port}/hooks/"  # type: ignore[attr-defined]
    yield answers
    port.stopListening()


def _hook(server: Answers) -> HttpHook:
    return HttpHook("tunit", "unit-secret-123", server.base_url, "json", reactor)  # type: ignore[attr-defined]


@pytest_twisted.ensureDeferred
async def test_a_check_is_a_signed_post_to_the_hook_path(server):
    hook = _hook(server)
    try:
        assert await hook.check_message({"msg_id": "m1", "body": "hi"}) == (True, None)
        assert server.paths == ["/hooks/check-message"]
    finally:
        await maybeDeferred(hook._pool.closeCachedConnections)


@pytest_twisted.ensureDeferred
async def test_a_redirect_is_a_hook_failure_and_is_not_followed(server):
    server.status = 307
    server.headers[b"location"] = b"/elsewhere"
    hook = _hook(server)
    try:
        with pytest.raises(HookFailure, match="HTTP 307"):
            await hook.check_message({"msg_id": "m1", "body": "hi"})
        assert server.paths == ["/hooks/check-message"], "the signed request went nowhere else"
    finally:
        await maybeDeferred(hook._pool.closeCachedConnections)


@pytest.mark.parametrize(
    ("body", "why"), [(b"{not json", "malformed reply"), (b" " * (MAX_REPLY_BYTES + 1), "reply too large")]
)
@pytest_twisted.ensureDeferred
async def test_a_malformed_or_oversized_answer_is_a_hook_failure(server, body, why):
    server.body = body
    hook = _hook(server)
    try:
        with pytest.raises(HookFailure, match=why):
            await hook.check_messages([{"msg_id": "m1", "body": "hi"}], 150)
    finally:
        await maybeDeferred(hook._pool.closeCachedConnections)


@pytest_twisted.ensureDeferred
async def test_a_hook_server_that_is_gone_is_a_hook_failure(server):
    hook = HttpHook("tunit", "unit-secret-123", "http://127.0.0.1:1/hooks", "json", reactor)
    with pytest.raises(HookFailure, match="check_message"):
        await hook.check_message({"msg_id": "m1", "body": "hi"})
