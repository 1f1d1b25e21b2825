"""Billing: what things cost (pricing) and the plans enforced on every request (metering)."""
