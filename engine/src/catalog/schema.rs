//! Versioned migrations, applied in order; `PRAGMA user_version` records how far a catalog is.

pub const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    r#"
CREATE TABLE runs (
    id          INTEGER PRIMARY KEY,
    service     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    status      TEXT NOT NULL CHECK (status IN ('running', 'ok', 'failed', 'interrupted')),
    pid         INTEGER,
    error       TEXT,
    stderr_tail TEXT
);
CREATE INDEX runs_by_service ON runs (service, started_at);

CREATE TABLE backups (
    id       INTEGER PRIMARY KEY,
    service  TEXT NOT NULL,
    taken_at INTEGER NOT NULL,
    driver   TEXT NOT NULL,
    run_id   INTEGER REFERENCES runs (id),
    UNIQUE (service, taken_at)
);

CREATE TABLE artifacts (
    id                INTEGER PRIMARY KEY,
    backup_id         INTEGER NOT NULL REFERENCES backups (id) ON DELETE CASCADE,
    file              TEXT NOT NULL,
    key               TEXT NOT NULL UNIQUE,
    raw_size          INTEGER NOT NULL,
    raw_sha256        TEXT NOT NULL,
    stored_size       INTEGER NOT NULL,
    stored_sha256     TEXT NOT NULL,
    block_size        INTEGER NOT NULL,
    compression_level INTEGER NOT NULL,
    block_count       INTEGER NOT NULL,
    block_index       BLOB NOT NULL,
    facts             TEXT NOT NULL
);
CREATE INDEX artifacts_by_backup ON artifacts (backup_id);

CREATE TABLE copies (
    artifact_id INTEGER NOT NULL REFERENCES artifacts (id) ON DELETE CASCADE,
    tier        TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('present', 'corrupt', 'missing')),
    stored_at   INTEGER NOT NULL,
    verified_at INTEGER,
    error       TEXT,
    PRIMARY KEY (artifact_id, tier)
);

CREATE TABLE verifications (
    id          INTEGER PRIMARY KEY,
    artifact_id INTEGER NOT NULL REFERENCES artifacts (id) ON DELETE CASCADE,
    tier        TEXT NOT NULL,
    at          INTEGER NOT NULL,
    ok          INTEGER NOT NULL,
    detail      TEXT
);
"#,
    // 2: bytes moved by a run (sync uploads), for throughput metrics.
    "ALTER TABLE runs ADD COLUMN bytes INTEGER;",
    // 3: the desired state. A backup row outlives its files (the history that copy policies and
    // retention count, as if every tier had held every backup); `retired` remembers which tier
    // dropped which backup, so sync never sends it there again; pins override retention.
    r#"
ALTER TABLE backups ADD COLUMN pinned_at INTEGER;
CREATE TABLE retired (
    backup_id INTEGER NOT NULL REFERENCES backups (id) ON DELETE CASCADE,
    tier      TEXT NOT NULL,
    at        INTEGER NOT NULL,
    PRIMARY KEY (backup_id, tier)
);
CREATE INDEX copies_by_tier ON copies (tier);
-- Every command asks for the newest run of a kind, and for runs still marked running: both
-- stay index lookups however long the history grows (cron adds a few runs an hour).
CREATE INDEX runs_by_kind ON runs (service, kind, id);
CREATE INDEX runs_running ON runs (status) WHERE status = 'running';
CREATE INDEX verifications_by_copy ON verifications (artifact_id, tier, id);
"#,
    // 4: `retired` only matters for backups some tier still holds: forget the rest. Every
    // sync asks whether a tier holds a corrupt copy: a partial index answers at once.
    r#"
DELETE FROM retired WHERE backup_id NOT IN (SELECT backup_id FROM artifacts);
CREATE INDEX copies_corrupt ON copies (tier) WHERE state = 'corrupt';
"#,
    // 5: the restic snapshot that holds a copy on a restic tier (NULL on every other tier).
    "ALTER TABLE copies ADD COLUMN snapshot TEXT;",
];
