"""Who may use a client id that already has a session (pure policy, no I/O).

MQTT lets any new connection with the same client id replace the old one. With tokens that
would let a viewer kick a device off the broker, or squat a device's id so the device cannot
connect. The rules here keep the MQTT behaviour for the owner of a session and refuse it to
everybody else:

- a device token's client id is its own device id (the auth plugin enforces it), so it may
  always take its id back;
- otherwise a connected session may only be replaced by the same token;
- an offline session of a device (with its queued commands) is not given to anyone else;
- any other offline session is discarded for a newcomer.

A persistent session (clean_session = 0) is resumed only by its owner; anyone else starts
fresh, so queued messages never reach a principal they were not checked against.
"""

from __future__ import annotations

import enum

from ems_access import Principal


class Decision(enum.Enum):
    REFUSE = "refuse"
    FRESH = "fresh"
    RESUME = "resume"


def same_owner(new: Principal, old: Principal) -> bool:
    if new.token_id == old.token_id:
        return True
    return new.role == old.role == "device" and new.device_id == old.device_id


def decide(
    new: Principal, old: Principal | None, *, old_connected: bool, clean_session: bool
) -> Decision:
    if old is None:
        return Decision.FRESH
    owner = same_owner(new, old)
    if not owner:
        if new.role != "device" and (old_connected or old.role == "device"):
            return Decision.REFUSE
        return Decision.FRESH
    return Decision.FRESH if clean_session else Decision.RESUME
