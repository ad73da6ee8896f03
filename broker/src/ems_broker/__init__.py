"""EMS MQTT broker layer: embedded amqtt with token auth and ACL plugins, Mosquitto glue."""
