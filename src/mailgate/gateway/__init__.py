"""The gateway: SMTP listener for devices, durable queue, delivery through the provider."""
