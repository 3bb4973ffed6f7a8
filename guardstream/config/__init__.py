"""Configuration: settings from the environment, the model catalog, tiers and tenants, the
packaged data files, and the one YAML loader. Pure: no Kafka or Faust."""
