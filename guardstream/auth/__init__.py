"""Signed events: who sent a record, proven by a signature over its exact bytes (pure logic)."""
