"""Compiling the EMS auth plugin (C, ``broker/mosquitto-plugin``) on first use.

The shared object is cached under a directory named after the hash of the sources and
compiler flags, so an edited plugin is rebuilt and an unchanged one is compiled once per
machine. Compilation goes to a temporary file renamed into place, so concurrent starts
(parallel tests) never load a half-written library.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

HEADERS = (Path("/usr/include/mosquitto_broker.h"), Path("/usr/include/mosquitto_plugin.h"))
PLUGIN_NAME = "ems_auth.so"
CFLAGS = ("-O2", "-fPIC", "-shared", "-std=gnu11", "-Wall", "-Wextra", "-fvisibility=hidden")
LIBS = ("-lcrypto",)
SETUP_HINT = "run scripts/setup-system.sh (it installs gcc, mosquitto-dev and libssl-dev)"


class PluginBuildError(RuntimeError):
    """The plugin cannot be compiled here."""


def source_dir() -> Path:
    """The C sources: packaged beside this module in a wheel, else the repository's copy."""
    packaged = Path(__file__).with_name("plugin_src")
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[3] / "mosquitto-plugin"


def _sources(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix in (".c", ".h"))


def source_hash(directory: Path | None = None) -> str:
    digest = hashlib.sha256()
    for path in _sources(directory or source_dir()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(" ".join(CFLAGS + LIBS).encode())
    return digest.hexdigest()[:16]


def _check_toolchain() -> str:
    missing = [str(h) for h in HEADERS if not h.exists()]
    if missing:
        raise PluginBuildError(
            f"Mosquitto plugin headers missing ({', '.join(missing)}): {SETUP_HINT}"
        )
    if not Path("/usr/include/openssl/evp.h").exists():
        raise PluginBuildError(f"OpenSSL headers missing (openssl/evp.h): {SETUP_HINT}")
    compiler = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise PluginBuildError(f"no C compiler (gcc) found: {SETUP_HINT}")
    return compiler


def build_plugin(cache_dir: Path, directory: Path | None = None) -> Path:
    """The path of the compiled plugin, compiling it first if this source was never built."""
    directory = directory or source_dir()
    if not directory.is_dir():
        raise PluginBuildError(f"plugin sources not found at {directory}")
    target = cache_dir / source_hash(directory) / PLUGIN_NAME
    if target.exists():
        return target
    compiler = _check_toolchain()
    target.parent.mkdir(parents=True, exist_ok=True)
    sources = [str(p) for p in _sources(directory) if p.suffix == ".c"]
    fd, tmp_name = tempfile.mkstemp(prefix=".ems_auth.", suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        result = subprocess.run(
            [compiler, *CFLAGS, "-o", tmp_name, *sources, *LIBS],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise PluginBuildError(
                f"compiling the Mosquitto plugin failed ({SETUP_HINT} if headers are"
                f" missing):\n{result.stderr.strip()}"
            )
        os.chmod(tmp_name, 0o644)  # dlopen needs read access only
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    logger.info("compiled the EMS Mosquitto plugin into %s", target)
    return target
