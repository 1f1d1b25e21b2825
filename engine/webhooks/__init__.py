"""Webhooks: when an async job ends, its result goes to the caller's URL, signed (Standard Webhooks)."""
