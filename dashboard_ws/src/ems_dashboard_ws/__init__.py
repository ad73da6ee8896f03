"""EMS dashboard WebSocket adapter: MQTT topics mirrored to browsers under the same ACLs."""
