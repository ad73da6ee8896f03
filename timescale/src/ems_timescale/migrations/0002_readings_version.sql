-- The ingest keeps the newest stored reading of every device/phase in memory, so it need not
-- look each one up per batch. readings_version says whether that memory is still true: every
-- transaction that writes a device's readings (under the device's advisory lock) sets it to a
-- fresh value of this sequence, and a worker trusts its memory of a device only while the
-- stored value is the one its own last commit set. Another worker, a deleted and re-created
-- device or an outside writer all show up as a different value.
CREATE SEQUENCE IF NOT EXISTS readings_version_seq;
ALTER TABLE devices ADD COLUMN IF NOT EXISTS readings_version bigint;
