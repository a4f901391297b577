-- smapds 002: the run ledger and the granule inventory.

CREATE TABLE smapds.run_ledger (
    domain           text        NOT NULL,
    run_date         date        NOT NULL,
    stage            text        NOT NULL,
    status           text        NOT NULL,
    attempts         integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    run_id           uuid,
    started_at       timestamptz,
    finished_at      timestamptz,
    error            text,
    details          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    software_version text,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (domain, run_date, stage),
    CONSTRAINT run_ledger_status_ck CHECK (status IN
        ('PENDING', 'RUNNING', 'OK', 'DEGRADED', 'INSUFFICIENT_DATA', 'QUARANTINED', 'FAILED',
         'SKIPPED')),
    CONSTRAINT run_ledger_times_ck CHECK (finished_at IS NULL OR started_at IS NULL
                                          OR finished_at >= started_at)
);
CREATE INDEX run_ledger_status_idx ON smapds.run_ledger (status) WHERE status <> 'OK';

COMMENT ON TABLE smapds.run_ledger IS
    'One row per (domain, date, stage): the latest outcome of that stage for that day. '
    'Catch-up after downtime reads this table, never the scheduler''s memory.';
COMMENT ON COLUMN smapds.run_ledger.run_date IS 'The product day (UTC) the stage worked on.';
COMMENT ON COLUMN smapds.run_ledger.stage IS 'fetch, stack, predict, product, ingest, validate, ...';
COMMENT ON COLUMN smapds.run_ledger.status IS
    'OK, DEGRADED (produced with stale inputs), INSUFFICIENT_DATA, QUARANTINED, FAILED, '
    'PENDING (waiting for data), RUNNING, SKIPPED';
COMMENT ON COLUMN smapds.run_ledger.attempts IS 'How many times the stage was started for this day.';
COMMENT ON COLUMN smapds.run_ledger.run_id IS 'The process run that wrote the row (also in the logs).';
COMMENT ON COLUMN smapds.run_ledger.error IS 'Error class and message of the last failure, if any.';
COMMENT ON COLUMN smapds.run_ledger.details IS 'Stage-specific facts (counts, inputs, staleness).';

CREATE TABLE smapds.granules (
    source        text        NOT NULL,
    granule_date  date        NOT NULL,
    granule_id    text        NOT NULL,
    product       text        NOT NULL,
    version       text,
    status        text        NOT NULL,
    path          text,
    size_bytes    bigint      CHECK (size_bytes >= 0),
    sha256        text        CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    attempts      integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    error         text,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, granule_date, granule_id),
    CONSTRAINT granules_status_ck CHECK (status IN ('pending', 'fetched', 'quarantined', 'gap')),
    CONSTRAINT granules_fetched_ck CHECK (status <> 'fetched'
                                          OR (path IS NOT NULL AND sha256 IS NOT NULL))
);
CREATE INDEX granules_status_idx ON smapds.granules (status, granule_date);

COMMENT ON TABLE smapds.granules IS
    'Inventory of input granules in the raw archive, one row per (source, date, granule). '
    'A date whose granule has not appeared yet has granule_id ''*'' and status pending, '
    'then gap once its latency window has passed.';
COMMENT ON COLUMN smapds.granules.source IS 'Configured input name, e.g. SPL3SMP, MCD43A3, IMERG.';
COMMENT ON COLUMN smapds.granules.granule_id IS 'Provider granule id (file name), or * for none yet.';
COMMENT ON COLUMN smapds.granules.status IS
    'pending (expected, not yet available), fetched (verified, in the archive), '
    'quarantined (failed verification; never used), gap (never arrived within the window)';
COMMENT ON COLUMN smapds.granules.path IS 'Path in the raw archive, relative to the data directory.';
COMMENT ON COLUMN smapds.granules.sha256 IS 'sha256 of the archived file, hex.';
