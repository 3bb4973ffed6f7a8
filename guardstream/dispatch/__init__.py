"""The optional dispatch stage's logic: calling LLM providers with retries, failover and
circuit breakers, and turning what they report (or an estimate) into priced usage. The HTTP
client is one injected attempt function; everything here is testable without a network."""
