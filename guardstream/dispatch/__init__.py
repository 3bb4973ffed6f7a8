"""The optional dispatch stage: calling the model over an OpenAI-compatible HTTP API.

`http` is the client side of one call, `simulator` a provider that speaks the same protocol
for tests, demos and load tests (`guardstream provider-sim`).
"""
