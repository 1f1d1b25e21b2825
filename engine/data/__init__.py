"""The data-access layer: tables, sessions, migrations, and the records that must hold across processes
(leases, idempotency keys)."""
