"""The local stack: a real Kafka broker (KRaft) and a real Apicurio Registry, no Docker."""
