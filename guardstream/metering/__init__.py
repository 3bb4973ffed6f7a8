"""The metering stage's pure logic: rate-limit buckets, budget periods, money, the table
layout and the per-record step. No Kafka or Faust here: `agents.meter` owns the tables."""
