"""Topics, Kafka clients and admin, reading a topic, and the CloudEvents envelope."""
