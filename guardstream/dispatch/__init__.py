"""The optional dispatch stage: calling the model over an OpenAI-compatible HTTP API.

`router` tries a model's provider deployments with retries, failover and circuit breakers
around one injected attempt; `http` is that attempt (one chat-completions call); `usage`
turns what the provider reports (or an estimate) into priced usage; `simulator` is a
provider speaking the same protocol for tests, demos and load tests
(`guardstream provider-sim`).
"""
