"""Accounts: users, workspaces, plans and API keys; admin operations; the sign-in throttle."""
