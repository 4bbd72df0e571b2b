"""Who may do what in a tenant realm. Users go through `decide` (the dynamic authorizer); backends,
admins and our own components have static permissions (`*_permissions`).

Crossbar caches authorizer answers per (realm, authrole, uri, action) — not per user, and not per
match policy — so any answer that depends on the user (their own inbox), on the match policy under
a URI that is not a literal prefix of its own namespace (presence: exact only), or on state that
changes (the tenant's presence_queries, a session's number of watches) says cache=False. Everything
else is the same for every user of the role and is cached.
"""

from __future__ import annotations

from typing import Any

from mics import uris
from mics.config import is_valid_entity_id

MAX_PRESENCE_WATCHES = 1000  # mics.presence.<user_id> subscriptions per session

_DENY = {"allow": False, "cache": True}
_DENY_NOCACHE = {"allow": False, "cache": False}
_ALLOW_CALL = {"allow": True, "disclose": True, "cache": True}
# tenant procedures are not cached, so every call reaches us and counts as heartbeat activity
_ALLOW_TENANT_CALL = {"allow": True, "disclose": True, "cache": False}
_ALLOW_SUBSCRIBE = {"allow": True, "cache": True}
_ALLOW_OWN_INBOX = {"allow": True, "cache": False}
_ALLOW_PRESENCE = {"allow": True, "cache": False}


def decide(authid: str, uri: str, action: str, match: str | None, presence: bool = False) -> dict[str, Any]:
    """The authorizer's answer for a `user` session. `presence`: whether this session may watch one
    more user's presence now (the tenant allows presence queries, the session is under its cap)."""
    if action == "call":
        if uri in uris.USER_PROCEDURES:
            return _ALLOW_CALL
        if uri.startswith(uris.TENANT_PREFIX):
            return _ALLOW_TENANT_CALL
        return _DENY
    if action == "subscribe":
        if uri.startswith(uris.GROUP_PREFIX) or uri.startswith(uris.TENANT_PREFIX):
            # the literal prefix pins every match policy under it; delivery is by eligible_authid
            return _ALLOW_SUBSCRIBE
        if uri.startswith(uris.INBOX_PREFIX):
            own = uri == uris.INBOX_PREFIX + authid and (match in (None, "exact"))
            return _ALLOW_OWN_INBOX if own else _DENY_NOCACHE
        if uri.startswith(uris.PRESENCE_PREFIX):
            # exact only: a prefix or wildcard would watch users the session never named
            watched = uri[len(uris.PRESENCE_PREFIX) :]
            ok = presence and match in (None, "exact") and is_valid_entity_id(watched)
            return _ALLOW_PRESENCE if ok else _DENY_NOCACHE
        # wildcards such as "mics..": could match another user's inbox
        return _DENY_NOCACHE
    return _DENY  # users never publish or register


def _perm(uri: str, match: str = "exact", call=False, register=False, publish=False, subscribe=False, disclose=False):  # type: ignore[no-untyped-def]
    return {
        "uri": uri,
        "match": match,
        "allow": {"call": call, "register": register, "publish": publish, "subscribe": subscribe},
        "disclose": {"caller": disclose, "publisher": disclose},
        "cache": True,
    }


def backend_permissions() -> list[dict[str, Any]]:
    """A tenant backend: hooks, agents and tenant.* procedures, system sends, session admin, events."""
    calls = [uris.MESSAGE_SEND, uris.GROUP_SEND, uris.GROUP_MEMBERS_CHANGED, uris.SESSION_LIST, uris.SESSION_KICK,
             uris.PRESENCE_GET, uris.PING, uris.SESSION_GET, uris.AGENT_LIST]  # fmt: skip
    return [
        _perm(uris.HOOK_PREFIX, "prefix", register=True),
        # agents (section 12): only the node calls them; mics.agent.list is registered by the node first
        _perm(uris.AGENT_PREFIX, "prefix", register=True),
        _perm(uris.TENANT_PREFIX, "prefix", call=True, register=True, publish=True, subscribe=True),
        _perm(uris.EVENT_PREFIX, "prefix", subscribe=True),
        *(_perm(uri, call=True, disclose=True) for uri in calls),
    ]


def service_permissions() -> list[dict[str, Any]]:
    """Our own router-embedded components: everything. A `tenant.*` call our component makes for a
    caller on another node names that caller (CallOptions.forward_for), so it is disclosed to the
    callee as the same call on the caller's node would be; publishes stay undisclosed, as a
    backend's are."""
    every = {"call": True, "register": True, "publish": True, "subscribe": True}
    tenant = {**_perm(uris.TENANT_PREFIX, "prefix"), "allow": every, "disclose": {"caller": True, "publisher": False}}
    return [_perm("", "prefix", **every), tenant]


def tenant_roles() -> list[dict[str, Any]]:
    return [
        {"name": uris.ROLE_USER, "authorizer": uris.AUTHORIZE},
        {"name": uris.ROLE_BACKEND, "permissions": backend_permissions()},
        {"name": uris.ROLE_SERVICE, "permissions": service_permissions()},
    ]
