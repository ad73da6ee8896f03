"""Process-wide plumbing shared by ingest and the API: settings, database, logging, backoff."""
