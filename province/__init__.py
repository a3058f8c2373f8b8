"""The provincial side: the MQTT receiver that verifies and stores packages and sends receipts."""
