"""Stock Mosquitto with a password file and an ACL file: the comparison without EMS glue.

Labelled ``mosquitto-plain`` everywhere: it checks the same tokens (as passwords) and the
device default rules as ACL patterns, but not the device-id binding, expiry or live
revocation that ``ems broker --mosquitto`` adds.
"""

from __future__ import annotations

import base64
import hashlib
import os
import pwd
import secrets
from collections.abc import Iterable
from pathlib import Path

from benchmarks.bench_db import SUBSCRIBER_NAME, Credentials, Device

MOSQUITTO = Path("/usr/sbin/mosquitto")
# Mosquitto 2.0's own format ("$7$": PBKDF2-SHA512), as mosquitto_passwd writes it.
_PBKDF2_ITERATIONS = 101

ACL = f"""\
user {SUBSCRIBER_NAME}
topic readwrite ems/#

pattern write ems/%c/telemetry
pattern write ems/%c/status
pattern write ems/%c/cmd/ack
pattern read ems/%c/cmd
"""


def password_line(username: str, password: str) -> str:
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _PBKDF2_ITERATIONS)
    salt_b64 = base64.b64encode(salt).decode()
    digest_b64 = base64.b64encode(digest).decode()
    return f"{username}:$7${_PBKDF2_ITERATIONS}${salt_b64}${digest_b64}"


def _users(credentials: Credentials) -> Iterable[tuple[str, str]]:
    devices: list[Device] = [credentials.publisher, *credentials.warmup, *credentials.devices]
    yield SUBSCRIBER_NAME, credentials.subscriber_token
    for device in devices:
        yield device.device_id, device.token


def write_config(workdir: Path, port: int, credentials: Credentials) -> Path:
    """Password file, ACL file and config in `workdir` (readable by its owner only)."""
    passwords = workdir / "passwords"
    acl = workdir / "acl"
    config = workdir / "mosquitto.conf"
    old_umask = os.umask(0o077)
    try:
        passwords.write_text("".join(password_line(u, p) + "\n" for u, p in _users(credentials)))
        acl.write_text(ACL)
        config.write_text(
            # Run as root, Mosquitto would switch to its own user and lose access to our
            # private directory; staying whoever we are avoids that.
            f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
            f"listener {port} 127.0.0.1\n"
            "allow_anonymous false\n"
            f"password_file {passwords}\n"
            f"acl_file {acl}\n"
            "persistence false\n"
            "log_dest stderr\n"
            "log_type error\n"
            "log_type warning\n"
        )
    finally:
        os.umask(old_umask)
    return config
