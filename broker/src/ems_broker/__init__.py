"""EMS MQTT broker: embedded amqtt 0.12.1 with token authentication and ACL plugins.

``running_broker(settings)`` serves inside an ``async with`` block (tests, the ``ems`` CLI);
``serve(settings)`` runs until cancelled; ``python -m ems_broker`` runs from EMS_* variables.
"""

from ems_broker.app import RunningBroker, broker_config, running_broker, serve
from ems_broker.server import EmsBroker
from ems_broker.settings import BrokerSettings

__all__ = [
    "BrokerSettings",
    "EmsBroker",
    "RunningBroker",
    "broker_config",
    "running_broker",
    "serve",
]
