"""Consumer lag: reading it from the broker, and serving it as Prometheus metrics."""
