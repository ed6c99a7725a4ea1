//! The alerts' embedded store (SQLite, `alerts.db`): its tables, in one place.
//! `alerts` holds each alert's state (one row per episode and machine);
//! `silences` what mutes notifications until when; `nflog` the notification
//! log (what each channel was last told about each group, for dedup and repeat
//! intervals, pruned after its retention); `outbox` the notices waiting for or
//! done with delivery (unique per channel and idempotency key); `digests` when
//! each scheduled digest last ran.

/// Bumped when a table changes; a store of another version is refused with a
/// message saying what to do.
pub const ALERT_STORE_VERSION: i64 = 1;

pub const ALERT_STORE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS alerts (
    id            TEXT PRIMARY KEY,
    group_key     TEXT NOT NULL,
    state         TEXT NOT NULL,          -- firing, acknowledged, resolved
    site          TEXT NOT NULL,
    vendor        TEXT NOT NULL,
    machine_id    TEXT NOT NULL,
    severity      TEXT NOT NULL,
    class         TEXT NOT NULL,
    mode          TEXT NOT NULL,          -- failure mode slug, '' when none
    starts_at_ms  INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    ends_at_ms    INTEGER,
    acked_by      TEXT,
    body          TEXT NOT NULL           -- the whole alert, JSON
);
CREATE INDEX IF NOT EXISTS alerts_by_group ON alerts(group_key, state);
CREATE TABLE IF NOT EXISTS silences (
    id           TEXT PRIMARY KEY,
    matchers     TEXT NOT NULL,           -- JSON object: label -> value, all must match
    starts_at_ms INTEGER NOT NULL,
    ends_at_ms   INTEGER NOT NULL,
    created_by   TEXT NOT NULL,
    comment      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS nflog (
    channel     TEXT NOT NULL,
    group_key   TEXT NOT NULL,
    alert_id    TEXT NOT NULL,
    told        TEXT NOT NULL,            -- digest of what was told (state, severity, mode)
    sent_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (channel, group_key)
);
CREATE TABLE IF NOT EXISTS outbox (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    channel         TEXT NOT NULL,
    idem_key        TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    site            TEXT NOT NULL,        -- whose admin hears of it if it dies ('' = every site)
    envelope        TEXT NOT NULL,        -- the sealed CloudEvent, JSON
    created_ms      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    state           TEXT NOT NULL,        -- pending, delivered, dead
    last_error      TEXT,
    delivered_ms    INTEGER,
    UNIQUE (channel, idem_key)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(channel, state, next_attempt_ms);
CREATE TABLE IF NOT EXISTS digests (
    name        TEXT PRIMARY KEY,
    last_run_ms INTEGER NOT NULL
);
";
