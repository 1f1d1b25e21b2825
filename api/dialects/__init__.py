"""The APIs other tools already speak, on the same engine, keys, plans, limits and credits as /api/v1."""
