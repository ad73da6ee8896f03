"""EMS Raspberry Pi agent: ADE9000 (or simulated) meter, SQLite outbox, MQTT, commands."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ems-device")
except PackageNotFoundError:  # running from a source tree without installed metadata
    __version__ = "0.1.0"

AGENT_NAME = f"ems-device/{__version__}"

__all__ = ["AGENT_NAME", "__version__"]
