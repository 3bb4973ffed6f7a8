"""The worker's runtime around the agents: Faust fixes, input continuity, health and
diagnostics pages, metrics, logs, the registry gate and the live tenant page."""
