-- EMS core schema. Forward-only; every statement is safe to re-run.
CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE TABLE IF NOT EXISTS devices (
    device_id   text PRIMARY KEY CHECK (device_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    name        text NOT NULL DEFAULT '',
    timezone    text NOT NULL DEFAULT 'UTC',
    phases      text[] NOT NULL DEFAULT '{A,B,C}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    online      boolean NOT NULL DEFAULT false,
    last_seen   timestamptz,
    status      jsonb,
    status_at   timestamptz
);

-- Only hashes of tokens are stored (sha256 hex of the high-entropy plaintext).
CREATE TABLE IF NOT EXISTS tokens (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    token_hash   text NOT NULL UNIQUE,
    role         text NOT NULL CHECK (role IN ('device', 'viewer', 'operator', 'service', 'admin')),
    label        text NOT NULL DEFAULT '',
    device_id    text REFERENCES devices (device_id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz,
    CHECK (role <> 'device' OR device_id IS NOT NULL)
);
CREATE INDEX IF NOT EXISTS tokens_device_idx ON tokens (device_id);

-- Ordered ACL rules per token; first match wins, no match denies.
CREATE TABLE IF NOT EXISTS acl_rules (
    token_id  uuid NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    position  integer NOT NULL CHECK (position >= 0),
    topic     text NOT NULL,
    access    text NOT NULL CHECK (access IN ('read', 'write', 'readwrite', 'deny')),
    PRIMARY KEY (token_id, position)
);

CREATE TABLE IF NOT EXISTS energy_readings (
    device_id        text NOT NULL,
    phase            text NOT NULL CHECK (phase IN ('A', 'B', 'C')),
    ts               timestamptz NOT NULL,
    voltage_rms      double precision NOT NULL,
    current_rms      double precision NOT NULL,
    power_watt       double precision NOT NULL,
    power_var        double precision NOT NULL,
    power_va         double precision NOT NULL,
    power_factor     double precision NOT NULL,
    voltage_thd      double precision NOT NULL,
    current_thd      double precision NOT NULL,
    energy_kwh       double precision NOT NULL,
    energy_delta_kwh double precision,
    flags            text[] NOT NULL DEFAULT '{}',
    seq              bigint NOT NULL,
    boot             text NOT NULL,
    received_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT energy_readings_key UNIQUE (device_id, phase, ts)
);
SELECT create_hypertable('energy_readings', by_range('ts', INTERVAL '1 day'), if_not_exists => true);

-- The audit log: every message as received, with the verdict on it.
CREATE TABLE IF NOT EXISTS raw_events (
    id          bigint GENERATED ALWAYS AS IDENTITY,
    received_at timestamptz NOT NULL DEFAULT now(),
    topic       text NOT NULL,
    device_id   text,
    payload     bytea NOT NULL,
    verdict     text NOT NULL CHECK (verdict IN ('accepted', 'duplicate', 'partial', 'quarantined')),
    reason      text,
    detail      jsonb,
    PRIMARY KEY (id, received_at)
);
SELECT create_hypertable('raw_events', by_range('received_at', INTERVAL '1 day'), if_not_exists => true);
CREATE INDEX IF NOT EXISTS raw_events_device_idx ON raw_events (device_id, received_at DESC);
CREATE INDEX IF NOT EXISTS raw_events_quarantine_idx ON raw_events (received_at DESC)
    WHERE verdict IN ('partial', 'quarantined');

CREATE TABLE IF NOT EXISTS commands (
    id           uuid PRIMARY KEY,
    device_id    text NOT NULL REFERENCES devices (device_id) ON DELETE CASCADE,
    name         text NOT NULL,
    args         jsonb NOT NULL DEFAULT '{}',
    state        text NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('pending', 'delivered', 'ok', 'error', 'rejected', 'expired')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    delivered_at timestamptz,
    acked_at     timestamptz,
    result       jsonb,
    error        text,
    created_by   uuid REFERENCES tokens (id) ON DELETE SET NULL
);
CREATE INDEX IF NOT EXISTS commands_device_idx ON commands (device_id, created_at DESC);

-- Edition-specific: native compression exists only under the Timescale (community) license.
DO $$
BEGIN
    IF current_setting('timescaledb.license', true) = 'timescale' THEN
        ALTER TABLE energy_readings SET (
            timescaledb.compress,
            timescaledb.compress_segmentby = 'device_id, phase',
            timescaledb.compress_orderby = 'ts'
        );
        PERFORM add_compression_policy('energy_readings', INTERVAL '7 days', if_not_exists => true);
    END IF;
END
$$;
