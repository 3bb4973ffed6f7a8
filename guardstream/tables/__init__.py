"""Table definitions and the pure state logic they hold (no Faust or Kafka imports in the
logic modules, so they are tested as plain Python)."""
