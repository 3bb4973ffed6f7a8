"""The stream stages, one module per stage; each is thin: decode, decide, route, record."""
