-- The time indexes TimescaleDB creates with each hypertable (B-trees on energy_readings.ts
-- and raw_events.received_at) become BRIN indexes.
--
-- Both columns grow with insertion order: readings arrive in real time, audit rows are
-- stamped as they are received. A BRIN index keeps one min/max summary per 128 heap pages,
-- so a time range still reads only the pages that can hold it (what continuous-aggregate
-- refreshes, retention checks and audit forensics ask), while a row inserted costs the index
-- nothing until VACUUM (insert-triggered autovacuum) summarises its finished page range.
-- A B-tree entry per row cost the database about a sixth of its work per message
-- (benchmarks/pg_write_cost.py, the ingest's batches: 54 -> 45 us of CPU per message, WAL
-- 1,862 -> 1,556 bytes per message, 8.3 -> 4.3 WAL records).
--
-- Per-device reads of readings use the unique key (device_id, phase, ts); per-device reads
-- of rejected messages use raw_events_device_rejected_idx (0003). A range of pages not yet
-- summarised is always read, so the newest rows are found without waiting for VACUUM.
DROP INDEX IF EXISTS energy_readings_ts_idx;
CREATE INDEX IF NOT EXISTS energy_readings_ts_brin ON energy_readings USING brin (ts);
DROP INDEX IF EXISTS raw_events_received_at_idx;
CREATE INDEX IF NOT EXISTS raw_events_received_at_brin ON raw_events USING brin (received_at);
