"""Store-and-forward to the province: durable queue, MQTT transfer protocol, bandwidth shaping."""
