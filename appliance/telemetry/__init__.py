"""Health telemetry: readings collected on the box, the `appliance doctor` verdicts, and the MQTT publisher."""
