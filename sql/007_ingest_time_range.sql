-- smapds 007: the time span of the observations each in situ file brought, so that the service can
-- collocate again exactly the product days an ingest touched (service/collocate.py).

ALTER TABLE smapds.ingest_files
    ADD COLUMN first_time timestamptz,
    ADD COLUMN last_time  timestamptz,
    ADD CONSTRAINT ingest_files_time_range_ck CHECK (first_time <= last_time);

COMMENT ON COLUMN smapds.ingest_files.first_time IS 'Earliest observation time loaded from the file (UTC); NULL when none loaded.';
COMMENT ON COLUMN smapds.ingest_files.last_time IS 'Latest observation time loaded from the file (UTC); NULL when none loaded.';

COMMENT ON COLUMN smapds.ingest_rejects.reason IS
    'Reason code: unparseable_time, time_zone_missing, time_out_of_range, duplicate_time, '
    'duplicate_key, non_numeric_value, lat_lon_out_of_range, wrong_column_count, '
    'missing_field, station_mismatch, unknown_station, value_out_of_range (soil moisture '
    'outside 0-1 m3/m3, e.g. percent given as m3/m3), malformed_record (a CSV line that is not '
    'a record: an unclosed quote, an oversized field).';
