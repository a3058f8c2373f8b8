"""Provincial provisioning: a small CA for device and receiver certificates, broker config + ACL generation."""
