"""EMS platform: MQTT ingest into TimescaleDB, REST API."""
