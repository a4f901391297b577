-- smapds 008: when the service last collocated what each in situ file brought, so that an ingest
-- whose collocation was cut short (a kill, a crash) is collocated by the next ingest run instead
-- of never (service/collocate.py collocate_ingested). Files loaded before this migration count as
-- collocated (their runs collocated them); a file loaded again with other content is not.

ALTER TABLE smapds.ingest_files ADD COLUMN collocated_at timestamptz;
UPDATE smapds.ingest_files SET collocated_at = loaded_at;

CREATE INDEX ingest_files_not_collocated_ix ON smapds.ingest_files (file_id)
    WHERE collocated_at IS NULL;

COMMENT ON COLUMN smapds.ingest_files.collocated_at IS
    'When the product days its observations reach were last collocated with them; NULL: still to do.';
