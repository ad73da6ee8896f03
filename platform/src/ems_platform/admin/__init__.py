"""Registry and token administration, shared by the REST API and the ``ems`` CLI."""

from ems_platform.admin.devices import (
    DeviceExistsError,
    DeviceRow,
    InvalidDeviceError,
    add_device,
    delete_device,
    get_device,
    list_devices,
)
from ems_platform.admin.tokens import install_configured_tokens

__all__ = [
    "DeviceExistsError",
    "DeviceRow",
    "InvalidDeviceError",
    "add_device",
    "delete_device",
    "get_device",
    "install_configured_tokens",
    "list_devices",
]
