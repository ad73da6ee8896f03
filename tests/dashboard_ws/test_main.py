"""``python -m ems_dashboard_ws`` as an operator meets it."""

from __future__ import annotations

import os
import subprocess
import sys


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EMS_")}
    return subprocess.run(
        [sys.executable, "-m", "ems_dashboard_ws", *args],
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        check=False,
    )


def test_help_lists_the_settings() -> None:
    result = _run("--help")
    assert result.returncode == 0
    for name in ("EMS_DATABASE_URL", "EMS_SERVICE_TOKEN", "EMS_WS_PORT", "EMS_MQTT_HOST"):
        assert name in result.stdout


def test_missing_settings_are_named_and_the_token_is_not_echoed() -> None:
    result = _run(env={"EMS_SERVICE_TOKEN": "ems_secretValueThatMustNotBeEchoed0123"})
    assert result.returncode == 2
    assert "EMS_DATABASE_URL" in result.stderr
    assert "secretValue" not in result.stderr + result.stdout
