"""EMS identity: hashed tokens, roles, ordered ACL rules; one engine for every door.

The broker, the REST API and the WebSocket adapter all ask the same ``Principal`` whether
an action on a topic is allowed, so a rule means the same thing everywhere.
"""

from ems_access.cache import AccessCache
from ems_access.errors import (
    AccessError,
    InvalidRuleError,
    InvalidTokenError,
    InvalidTopicFilterError,
    TokenNotFoundError,
    TokenUnusableError,
    UnknownDeviceError,
)
from ems_access.rules import (
    ACCESSES,
    ROLE_DEFAULTS,
    ROLES,
    Access,
    AclRule,
    Action,
    Principal,
    Role,
    default_rules,
)
from ems_access.store import (
    TokenInfo,
    authenticate,
    authenticate_hash,
    create_token,
    ensure_token,
    get_token,
    list_tokens,
    notify_access_changed,
    revoke_token,
    rotate_token,
    set_acl,
)
from ems_access.tokens import (
    MIN_TOKEN_LENGTH,
    TOKEN_PREFIX,
    generate_token,
    hash_token,
    verify_token,
)
from ems_access.topics import filter_covers, filters_overlap, is_valid_filter, topic_matches

__all__ = [
    "ACCESSES",
    "MIN_TOKEN_LENGTH",
    "ROLES",
    "ROLE_DEFAULTS",
    "TOKEN_PREFIX",
    "Access",
    "AccessCache",
    "AccessError",
    "AclRule",
    "Action",
    "InvalidRuleError",
    "InvalidTokenError",
    "InvalidTopicFilterError",
    "Principal",
    "Role",
    "TokenInfo",
    "TokenNotFoundError",
    "TokenUnusableError",
    "UnknownDeviceError",
    "authenticate",
    "authenticate_hash",
    "create_token",
    "default_rules",
    "ensure_token",
    "filter_covers",
    "filters_overlap",
    "generate_token",
    "get_token",
    "hash_token",
    "is_valid_filter",
    "list_tokens",
    "notify_access_changed",
    "revoke_token",
    "rotate_token",
    "set_acl",
    "topic_matches",
    "verify_token",
]
