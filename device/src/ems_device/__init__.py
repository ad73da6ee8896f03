"""EMS Raspberry Pi agent: ADE9000 over SPI (or simulated), SQLite outbox, MQTT publisher, commands."""
