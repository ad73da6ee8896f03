"""device/ installs and runs with only the contract and its own dependencies (as on a Pi)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVER_ONLY = ("fastapi", "asyncpg", "aiomqtt", "amqtt", "uvicorn", "starlette", "typer")
MODULES = (
    "ems_device",
    "ems_device.agent",
    "ems_device.cli",
    "ems_device.meter.simulated",
    "ems_device.meter.ade9000",
    "ems_device.relay",
)


def uv(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("uv")
    if binary is None:
        pytest.skip("uv is not on PATH")
    return subprocess.run([binary, *args], capture_output=True, text=True, cwd=REPO, timeout=600)


def test_device_installs_without_server_dependencies(tmp_path: Path) -> None:
    venv = tmp_path / "pi-venv"
    python = venv / "bin" / "python"
    created = uv("venv", "--quiet", "--python", "3.11", str(venv))
    assert created.returncode == 0, created.stderr
    install = ["pip", "install", "--quiet", "--python", str(python), "./contract", "./device"]
    result = uv(*install, "--offline")
    if result.returncode != 0:  # cache miss: fall back to the index
        result = uv(*install)
    assert result.returncode == 0, result.stderr

    check = (
        "import importlib, importlib.util\n"
        f"for name in {MODULES!r}: importlib.import_module(name)\n"
        f"present = [n for n in {SERVER_ONLY!r} if importlib.util.find_spec(n) is not None]\n"
        "assert not present, present\n"
        "print('ok')\n"
    )
    probe = subprocess.run([str(python), "-c", check], capture_output=True, text=True)
    assert probe.returncode == 0 and probe.stdout.strip() == "ok", probe.stderr

    script = subprocess.run(
        [str(venv / "bin" / "ems-device"), "--help"], capture_output=True, text=True
    )
    assert script.returncode == 0 and "run" in script.stdout, script.stderr
