"""guardstream: a Kafka-native guardrail and metering pipeline for LLM requests."""

__version__ = "0.1.0"
