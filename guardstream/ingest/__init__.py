"""The ingest stage's pure logic: judging one ingress record (decode, validate, clean,
route) and the payload rules. No Kafka or Faust: `agents.ingest` feeds it records."""
