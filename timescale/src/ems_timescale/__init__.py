"""EMS database: forward-only SQL migrations, their runner, and an embedded PostgreSQL+TimescaleDB cluster."""
