"""The worker's tables: their definitions and the tenant directory."""
