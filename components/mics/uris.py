"""The only place MICS URIs are spelled: topics, procedures, realms, roles."""

from __future__ import annotations

CONTROL_REALM = "mics.control"

# roles
ROLE_USER = "user"
ROLE_BACKEND = "backend"
ROLE_ADMIN = "admin"
ROLE_SERVICE = "mics"  # our own router-embedded components

# topics
INBOX_PREFIX = "mics.inbox."
GROUP_PREFIX = "mics.group."
EVENT_PREFIX = "mics.event."
TENANT_PREFIX = "tenant."
PRESENCE_PREFIX = "mics.presence."  # section 11: live presence of one user, exact subscriptions only


def inbox_topic(user_id: str) -> str:
    return INBOX_PREFIX + user_id


def group_topic(group_id: str) -> str:
    return GROUP_PREFIX + group_id


def presence_topic(user_id: str) -> str:
    return PRESENCE_PREFIX + user_id


def event_topic(event_type: str) -> str:
    return EVENT_PREFIX + event_type.lower()


# user procedures
MESSAGE_SEND = "mics.message.send"
GROUP_SEND = "mics.group.send"
INBOX_SYNC = "mics.inbox.sync"
MESSAGE_RECEIPT = "mics.message.receipt"
SIGNAL_SEND = "mics.signal.send"
PING = "mics.ping"
PRESENCE_GET = "mics.presence.get"
MESSAGE_RECALL = "mics.message.recall"
MESSAGE_EDIT = "mics.message.edit"
AGENT_LIST = "mics.agent.list"
USER_PROCEDURES = frozenset(
    {
        MESSAGE_SEND,
        GROUP_SEND,
        INBOX_SYNC,
        MESSAGE_RECEIPT,
        SIGNAL_SEND,
        PING,
        PRESENCE_GET,
        MESSAGE_RECALL,
        MESSAGE_EDIT,
        AGENT_LIST,
    }
)

# backend procedures (in the tenant realm)
SESSION_LIST = "mics.session.list"
SESSION_KICK = "mics.session.kick"
GROUP_MEMBERS_CHANGED = "mics.group.members_changed"

# the authorizer our per-realm component registers
AUTHORIZE = "mics.authorize"

# hooks a tenant backend registers (hook_transport: wamp)
HOOK_PREFIX = "mics.hook."
HOOK_AUTH = "mics.hook.auth"
HOOK_CHECK_MESSAGE = "mics.hook.check_message"
HOOK_CHECK_MESSAGES = "mics.hook.check_messages"  # the batched check (tenant config hook_batch_max > 1)
HOOK_GROUP_MEMBERS = "mics.hook.group_members"

# agents a tenant backend serves (section 12, transport wamp): `mics.agent.<agent_id>`; users may not
# call them (only the node does), and no agent is named `list` (mics.agent.list is ours)
AGENT_PREFIX = "mics.agent."


def agent_procedure(agent_id: str) -> str:
    return AGENT_PREFIX + agent_id

# admin procedures (realm mics.control)
ADMIN_TENANT_LIST = "mics.admin.tenant.list"
ADMIN_TENANT_GET = "mics.admin.tenant.get"
ADMIN_TENANT_UPSERT = "mics.admin.tenant.upsert"
ADMIN_TENANT_DISABLE = "mics.admin.tenant.disable"
ADMIN_SESSION_LIST = "mics.admin.session.list"
ADMIN_SESSION_KICK = "mics.admin.session.kick"
ADMIN_STATS = "mics.admin.stats"
ADMIN_DLQ_LIST = "mics.admin.dlq.list"
ADMIN_DLQ_REPUSH = "mics.admin.dlq.repush"

# router meta API
SESSION_ON_JOIN = "wamp.session.on_join"
SESSION_ON_LEAVE = "wamp.session.on_leave"
SESSION_KILL = "wamp.session.kill"
SESSION_GET = "wamp.session.get"
REGISTRATION_ON_CREATE = "wamp.registration.on_create"
REGISTRATION_ON_DELETE = "wamp.registration.on_delete"
SUBSCRIPTION_ON_CREATE = "wamp.subscription.on_create"
SUBSCRIPTION_ON_DELETE = "wamp.subscription.on_delete"
