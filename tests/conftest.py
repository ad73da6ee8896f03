"""Shared fixtures: each tests/support module starts one real service and stops it."""

pytest_plugins: list[str] = [
    "tests.support.pg",
    "tests.support.mosquitto",
    "tests.support.ems_broker",
    "tests.support.ems_mosquitto",
    "tests.support.brokers",
    "tests.support.platform",
]
