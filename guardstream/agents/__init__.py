"""The stream stages, one module per stage; each is thin: decode, decide, route, record.

`context` holds what they share and the edge where outcomes are encoded and sent.
"""
