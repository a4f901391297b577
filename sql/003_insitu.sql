-- smapds 003: in situ stations, sensors and observations (ISMN downloads and the generic CSV format).
--
-- Loading is idempotent: every table has a natural key and the loader (etl/insitu/load.py) writes
-- with upserts that change a row only when its content differs, so loading the same files again
-- changes nothing. observations is partitioned by month; partitions are created on demand by
-- smapds.ensure_observation_partitions (SECURITY DEFINER: the writer may not run DDL itself) and
-- there is deliberately no DEFAULT partition, so every row lands in its month.
-- Everything is UTC; times are timestamptz.

-- ---------------------------------------------------------------------------------------------
-- files read by the loader
-- ---------------------------------------------------------------------------------------------

CREATE TABLE smapds.ingest_files (
    file_id       integer     GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    path          text        NOT NULL,
    member        text        NOT NULL DEFAULT '',
    sha256        text        CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size_bytes    bigint      CHECK (size_bytes >= 0),
    format        text        NOT NULL,
    rows_read     integer     NOT NULL DEFAULT 0 CHECK (rows_read >= 0),
    rows_loaded   integer     NOT NULL DEFAULT 0 CHECK (rows_loaded >= 0),
    rows_rejected integer     NOT NULL DEFAULT 0 CHECK (rows_rejected >= 0),
    status        text        NOT NULL,
    error         text,
    loaded_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (path, member),
    CONSTRAINT ingest_files_format_ck CHECK (format IN
        ('ismn_header_values', 'ismn_ceop', 'ismn_static_variables', 'csv_stations',
         'csv_observations', 'zip', 'unknown')),
    CONSTRAINT ingest_files_status_ck CHECK (status IN ('OK', 'DEGRADED', 'QUARANTINED', 'FAILED')),
    CONSTRAINT ingest_files_rows_ck CHECK (rows_loaded + rows_rejected <= rows_read)
);

COMMENT ON TABLE smapds.ingest_files IS
    'One row per input file read by the in situ loader (a file on disk, or a member of a zip). '
    'A file whose path, member and sha256 match a row with status OK, DEGRADED or QUARANTINED is '
    'skipped when loaded again; FAILED (database or dependency trouble) is retried.';
COMMENT ON COLUMN smapds.ingest_files.file_id IS 'Surrogate id, referenced by observations.file_id.';
COMMENT ON COLUMN smapds.ingest_files.path IS 'Absolute path of the file, or of the zip archive holding it.';
COMMENT ON COLUMN smapds.ingest_files.member IS 'Path of the member inside the zip archive; empty for a plain file.';
COMMENT ON COLUMN smapds.ingest_files.sha256 IS 'sha256 of the (decompressed) file content, hex; NULL when unreadable.';
COMMENT ON COLUMN smapds.ingest_files.size_bytes IS 'Size of the (decompressed) content in bytes.';
COMMENT ON COLUMN smapds.ingest_files.format IS
    'ismn_header_values, ismn_ceop, ismn_static_variables, csv_stations, csv_observations, '
    'zip (the archive itself could not be read) or unknown.';
COMMENT ON COLUMN smapds.ingest_files.rows_read IS 'Non-empty data rows found in the file (header lines excluded).';
COMMENT ON COLUMN smapds.ingest_files.rows_loaded IS 'Rows accepted and written (or already present unchanged).';
COMMENT ON COLUMN smapds.ingest_files.rows_rejected IS 'Rows refused; each has a row in ingest_rejects.';
COMMENT ON COLUMN smapds.ingest_files.status IS
    'OK (all rows loaded), DEGRADED (some rows rejected), QUARANTINED (the file or all of its rows '
    'refused), FAILED (could not be loaded for a reason outside the file; retried next time).';
COMMENT ON COLUMN smapds.ingest_files.error IS 'Why the file was degraded, quarantined or failed.';
COMMENT ON COLUMN smapds.ingest_files.loaded_at IS 'When this content was last processed.';

CREATE TABLE smapds.ingest_rejects (
    file_id  integer NOT NULL REFERENCES smapds.ingest_files ON DELETE CASCADE,
    line_no  integer NOT NULL CHECK (line_no >= 1),
    reason   text    NOT NULL,
    detail   text    NOT NULL,
    line     text    NOT NULL,
    PRIMARY KEY (file_id, line_no)
);
CREATE INDEX ingest_rejects_reason_idx ON smapds.ingest_rejects (reason);

COMMENT ON TABLE smapds.ingest_rejects IS
    'Rows of input files that were refused, with the reason; the rest of the file loads. '
    'Replaced as a whole when a changed version of the file is loaded.';
COMMENT ON COLUMN smapds.ingest_rejects.file_id IS 'The file (ingest_files.file_id).';
COMMENT ON COLUMN smapds.ingest_rejects.line_no IS 'Line number in the file, 1-based (header lines count).';
COMMENT ON COLUMN smapds.ingest_rejects.reason IS
    'Reason code: unparseable_time, time_zone_missing, time_out_of_range, duplicate_time, '
    'duplicate_key, non_numeric_value, lat_lon_out_of_range, wrong_column_count, '
    'missing_field, station_mismatch, unknown_station.';
COMMENT ON COLUMN smapds.ingest_rejects.detail IS 'Human-readable explanation naming the offending field.';
COMMENT ON COLUMN smapds.ingest_rejects.line IS 'The raw line as read (truncated to 1000 characters).';

-- ---------------------------------------------------------------------------------------------
-- stations, their static attributes and grid cells, their sensors
-- ---------------------------------------------------------------------------------------------

CREATE TABLE smapds.stations (
    station_id   integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    network      text             NOT NULL,
    station      text             NOT NULL,
    station_key  text             NOT NULL,
    geom         geometry(Point, 4326) NOT NULL,
    elevation_m  double precision,
    UNIQUE (network, station_key)
);
CREATE INDEX stations_geom_idx ON smapds.stations USING gist (geom);
CREATE INDEX stations_geog_idx ON smapds.stations USING gist ((geom::geography));

COMMENT ON TABLE smapds.stations IS
    'In situ stations, one per (network, station_key). ISMN: coordinates from the first data file '
    'loaded for the station; generic CSV: the stations table is authoritative and updates them.';
COMMENT ON COLUMN smapds.stations.station_id IS 'Surrogate id.';
COMMENT ON COLUMN smapds.stations.network IS 'Network name as in the files (ISMN network, or the CSV network column).';
COMMENT ON COLUMN smapds.stations.station IS 'Station name as written inside the data file (not the folder name).';
COMMENT ON COLUMN smapds.stations.station_key IS
    'Matching key: the name lower-cased with every run of characters other than a-z and 0-9 '
    'replaced by one underscore (CST-01, CST_01 and cst 01 are one station).';
COMMENT ON COLUMN smapds.stations.geom IS 'Location, longitude/latitude WGS84 (SRID 4326).';
COMMENT ON COLUMN smapds.stations.elevation_m IS 'Elevation above sea level in metres, as given.';

CREATE TABLE smapds.station_attributes (
    station_id   integer NOT NULL REFERENCES smapds.stations ON DELETE CASCADE,
    quantity     text    NOT NULL,
    source       text    NOT NULL,
    depth_from_m numeric,
    depth_to_m   numeric,
    value_text   text    NOT NULL,
    value_num    double precision,
    unit         text,
    description  text,
    details      jsonb   NOT NULL DEFAULT '{}'::jsonb,
    CONSTRAINT station_attributes_key UNIQUE NULLS NOT DISTINCT
        (station_id, quantity, source, depth_from_m, depth_to_m)
);

COMMENT ON TABLE smapds.station_attributes IS
    'Static soil, land cover and climate attributes of a station as given: ISMN '
    '*_static_variables.csv rows (HWSD soil, ESA CCI land cover, Koeppen-Geiger climate, in situ '
    'values) and the optional attribute columns of the generic CSV stations table.';
COMMENT ON COLUMN smapds.station_attributes.station_id IS 'The station.';
COMMENT ON COLUMN smapds.station_attributes.quantity IS
    'Quantity name as given: saturation, clay fraction, sand fraction, silt fraction, '
    'organic carbon, land cover classification, climate classification, ...';
COMMENT ON COLUMN smapds.station_attributes.source IS
    'quantity_source_name as given (HWSD, CCI_landcover_2010, koeppen_geiger_2007, insitu) or csv.';
COMMENT ON COLUMN smapds.station_attributes.depth_from_m IS
    'Upper depth of the soil layer in metres; NULL when not a layer quantity. ISMN writes -99.9 '
    'for an unknown depth; it is kept as given.';
COMMENT ON COLUMN smapds.station_attributes.depth_to_m IS 'Lower depth of the soil layer in metres.';
COMMENT ON COLUMN smapds.station_attributes.value_text IS 'The value exactly as written (a class code, a number).';
COMMENT ON COLUMN smapds.station_attributes.value_num IS 'The value as a number when it is one.';
COMMENT ON COLUMN smapds.station_attributes.unit IS 'Unit as given (m^3*m^-3, % weight, ...).';
COMMENT ON COLUMN smapds.station_attributes.description IS 'Description as given (e.g. the land cover class name).';
COMMENT ON COLUMN smapds.station_attributes.details IS
    'The remaining columns of the source row (source description, provider, version, '
    'resolution, time range, url).';

CREATE TABLE smapds.station_cells (
    station_id integer NOT NULL REFERENCES smapds.stations ON DELETE CASCADE,
    domain     text    NOT NULL,
    row_1km    integer,
    col_1km    integer,
    row_9km    integer,
    col_9km    integer,
    row_36km   integer,
    col_36km   integer,
    PRIMARY KEY (station_id, domain),
    CONSTRAINT station_cells_all_or_none_ck CHECK (
        num_nulls(row_1km, col_1km, row_9km, col_9km, row_36km, col_36km) IN (0, 6))
);
CREATE INDEX station_cells_1km_idx ON smapds.station_cells (domain, row_1km, col_1km);

COMMENT ON TABLE smapds.station_cells IS
    'The EASE-Grid 2.0 cells of each station in each product domain, precomputed by the loader '
    '(etl.grid). A station outside the domain has a row with all cells NULL. Collocation with '
    'products joins here.';
COMMENT ON COLUMN smapds.station_cells.station_id IS 'The station.';
COMMENT ON COLUMN smapds.station_cells.domain IS 'Product domain name (etl.grid.DOMAINS), e.g. china.';
COMMENT ON COLUMN smapds.station_cells.row_1km IS 'Domain-relative row of the 1 km cell (0 = north edge).';
COMMENT ON COLUMN smapds.station_cells.col_1km IS 'Domain-relative column of the 1 km cell (0 = west edge).';
COMMENT ON COLUMN smapds.station_cells.row_9km IS 'Domain-relative row of the 9 km cell.';
COMMENT ON COLUMN smapds.station_cells.col_9km IS 'Domain-relative column of the 9 km cell.';
COMMENT ON COLUMN smapds.station_cells.row_36km IS 'Domain-relative row of the 36 km cell.';
COMMENT ON COLUMN smapds.station_cells.col_36km IS 'Domain-relative column of the 36 km cell.';

CREATE TABLE smapds.sensors (
    sensor_id    integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    station_id   integer       NOT NULL REFERENCES smapds.stations ON DELETE CASCADE,
    variable     text          NOT NULL,
    depth_from_m numeric(8, 4) NOT NULL,
    depth_to_m   numeric(8, 4) NOT NULL,
    instrument   text          NOT NULL,
    unit         text,
    UNIQUE (station_id, variable, depth_from_m, depth_to_m, instrument)
);

COMMENT ON TABLE smapds.sensors IS
    'One measured quantity at one depth by one instrument at a station (an ISMN data file).';
COMMENT ON COLUMN smapds.sensors.sensor_id IS 'Surrogate id, referenced by observations.sensor_id.';
COMMENT ON COLUMN smapds.sensors.station_id IS 'The station.';
COMMENT ON COLUMN smapds.sensors.variable IS
    'soil_moisture, soil_temperature, air_temperature, precipitation, ... (ISMN file name codes '
    'sm, ts, ta, p, ... spelt out; unknown codes kept as given).';
COMMENT ON COLUMN smapds.sensors.depth_from_m IS 'Upper sensing depth in metres below the surface (negative: above).';
COMMENT ON COLUMN smapds.sensors.depth_to_m IS 'Lower sensing depth in metres below the surface.';
COMMENT ON COLUMN smapds.sensors.instrument IS 'Instrument as given (e.g. ThetaProbe-ML2X, Cosmic-ray-Probe).';
COMMENT ON COLUMN smapds.sensors.unit IS 'Unit of the values (soil moisture: m3/m3).';

-- ---------------------------------------------------------------------------------------------
-- observations, partitioned by month
-- ---------------------------------------------------------------------------------------------

CREATE TABLE smapds.observations (
    sensor_id     integer          NOT NULL,
    time          timestamptz      NOT NULL,
    value         double precision NOT NULL,
    quality_flag  text             NOT NULL,
    provider_flag text,
    file_id       integer          NOT NULL,
    PRIMARY KEY (sensor_id, time)
) PARTITION BY RANGE (time);

COMMENT ON TABLE smapds.observations IS
    'In situ observations, one row per (sensor, time), partitioned by UTC month '
    '(observations_YYYY_MM, made by ensure_observation_partitions; no DEFAULT partition). '
    'No foreign keys, on purpose: a per-row referential check would halve the bulk load rate; '
    'the loader only writes sensor_id and file_id values it has just looked up.';
COMMENT ON COLUMN smapds.observations.sensor_id IS 'The sensor (sensors.sensor_id).';
COMMENT ON COLUMN smapds.observations.time IS 'Measurement time, UTC (ISMN: the actual time).';
COMMENT ON COLUMN smapds.observations.value IS 'Value in the unit of the sensor (soil moisture: m3/m3).';
COMMENT ON COLUMN smapds.observations.quality_flag IS
    'ISMN quality flag kept as given: G good; C01-C03 out of range; D01-D10 dubious; M missing; '
    'U unchecked; several are joined by commas (D03,D10). Only G is used for validation.';
COMMENT ON COLUMN smapds.observations.provider_flag IS 'The data provider''s own flag as given (ISMN writes M for none); NULL when absent.';
COMMENT ON COLUMN smapds.observations.file_id IS 'The file that last set this value (ingest_files.file_id).';

CREATE FUNCTION smapds.ensure_observation_partitions(from_time timestamptz, to_time timestamptz)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET timezone = 'UTC'
AS $fn$
DECLARE
    first_month timestamptz := date_trunc('month', from_time);
    last_month  timestamptz := date_trunc('month', to_time);
    month       timestamptz;
    part        text;
    created     integer := 0;
BEGIN
    IF from_time IS NULL OR to_time IS NULL OR to_time < from_time THEN
        RAISE EXCEPTION 'ensure_observation_partitions: invalid range [%, %]', from_time, to_time;
    END IF;
    IF from_time < '1900-01-01 00:00+00' OR to_time >= '2101-01-01 00:00+00' THEN
        RAISE EXCEPTION 'ensure_observation_partitions: range [%, %] outside 1900-2100',
            from_time, to_time;
    END IF;
    IF last_month > first_month + interval '100 years' THEN
        RAISE EXCEPTION 'ensure_observation_partitions: more than 100 years requested';
    END IF;
    month := first_month;
    WHILE month <= last_month LOOP
        part := format('observations_%s', to_char(month, 'YYYY_MM'));
        IF to_regclass(format('smapds.%I', part)) IS NULL THEN
            -- serialise creators (a self-conflicting lock that also refreshes the catalog
            -- cache), then check again
            LOCK TABLE smapds.observations IN SHARE ROW EXCLUSIVE MODE;
            IF to_regclass(format('smapds.%I', part)) IS NULL THEN
                EXECUTE format(
                    'CREATE TABLE smapds.%I PARTITION OF smapds.observations '
                    'FOR VALUES FROM (%L) TO (%L)',
                    part, month, month + interval '1 month');
                EXECUTE format(
                    'COMMENT ON TABLE smapds.%I IS %L', part,
                    format('In situ observations of %s (UTC); a partition of smapds.observations.',
                           to_char(month, 'YYYY-MM')));
                created := created + 1;
            END IF;
        END IF;
        month := month + interval '1 month';
    END LOOP;
    RETURN created;
END
$fn$;

COMMENT ON FUNCTION smapds.ensure_observation_partitions(timestamptz, timestamptz) IS
    'Create the missing monthly partitions of smapds.observations covering [from_time, to_time] '
    '(UTC months); returns how many were created. Runs as the schema owner so the writer, which '
    'may not run DDL, can call it; limited to 1900-2100.';

REVOKE ALL ON FUNCTION smapds.ensure_observation_partitions(timestamptz, timestamptz) FROM PUBLIC;
DO $grant$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'smapds_writer') THEN
        GRANT EXECUTE ON FUNCTION
            smapds.ensure_observation_partitions(timestamptz, timestamptz) TO smapds_writer;
    END IF;
END
$grant$;

-- ---------------------------------------------------------------------------------------------
-- the surface soil moisture rule
-- ---------------------------------------------------------------------------------------------

CREATE FUNCTION smapds.surface_max_depth_m() RETURNS double precision
LANGUAGE sql STABLE PARALLEL SAFE
AS $fn$
    SELECT coalesce(nullif(current_setting('smapds.surface_max_depth_m', true), '')::double precision,
                    0.05)
$fn$;

COMMENT ON FUNCTION smapds.surface_max_depth_m() IS
    'The deepest depth_from (m) of a sensor that still counts as surface soil moisture: the '
    'session or database setting smapds.surface_max_depth_m, 0.05 when unset '
    '(SET smapds.surface_max_depth_m = ''0.10'').';

CREATE FUNCTION smapds.surface_sensors_at(max_depth_from_m double precision)
RETURNS TABLE (station_id integer, sensor_id integer, depth_from_m numeric, depth_to_m numeric,
               instrument text, replicates integer)
LANGUAGE sql STABLE PARALLEL SAFE
AS $fn$
    SELECT station_id, sensor_id, depth_from_m, depth_to_m, instrument,
           count(*) OVER (PARTITION BY station_id)::integer
      FROM (SELECT s.*,
                   rank() OVER (PARTITION BY s.station_id
                                ORDER BY s.depth_from_m, s.depth_to_m) AS depth_rank
              FROM smapds.sensors s
             WHERE s.variable = 'soil_moisture' AND s.depth_from_m >= 0
               AND s.depth_from_m <= max_depth_from_m) ranked
     WHERE depth_rank = 1
$fn$;

COMMENT ON FUNCTION smapds.surface_sensors_at(double precision) IS
    'The surface soil moisture sensors of every station: soil_moisture sensors with '
    '0 <= depth_from_m <= max_depth_from_m; of those, the shallowest layer (smallest depth_from, '
    'then smallest depth_to). Replicates (several sensors on that same layer) are all returned '
    '(replicates = how many); daily values average them, each sensor weighted equally.';

CREATE VIEW smapds.surface_sensors AS
SELECT * FROM smapds.surface_sensors_at(smapds.surface_max_depth_m());

COMMENT ON VIEW smapds.surface_sensors IS
    'surface_sensors_at(surface_max_depth_m()): the surface sensors under the current setting '
    'smapds.surface_max_depth_m (default 0.05 m).';
COMMENT ON COLUMN smapds.surface_sensors.station_id IS 'The station.';
COMMENT ON COLUMN smapds.surface_sensors.sensor_id IS 'A surface soil moisture sensor of the station.';
COMMENT ON COLUMN smapds.surface_sensors.depth_from_m IS 'Its upper depth, m.';
COMMENT ON COLUMN smapds.surface_sensors.depth_to_m IS 'Its lower depth, m.';
COMMENT ON COLUMN smapds.surface_sensors.instrument IS 'Its instrument.';
COMMENT ON COLUMN smapds.surface_sensors.replicates IS 'Number of sensors on the chosen layer at the station.';

-- ---------------------------------------------------------------------------------------------
-- what analysts query
-- ---------------------------------------------------------------------------------------------

CREATE FUNCTION smapds.surface_daily_sm(max_depth_from_m double precision,
                                        from_time timestamptz DEFAULT '-infinity',
                                        to_time timestamptz DEFAULT 'infinity')
RETURNS TABLE (station_id integer, day date, soil_moisture double precision, n_obs integer,
               n_sensors integer)
LANGUAGE sql STABLE PARALLEL SAFE
AS $fn$
    SELECT p.station_id, p.day, avg(p.value), sum(p.n)::integer, count(*)::integer
      FROM (SELECT ss.station_id, o.sensor_id, (o.time AT TIME ZONE 'UTC')::date AS day,
                   avg(o.value) AS value, count(*) AS n
              FROM smapds.surface_sensors_at(max_depth_from_m) ss
              JOIN smapds.observations o ON o.sensor_id = ss.sensor_id
             WHERE o.quality_flag = 'G' AND o.time >= from_time AND o.time < to_time
             GROUP BY ss.station_id, o.sensor_id, (o.time AT TIME ZONE 'UTC')::date) p
     GROUP BY p.station_id, p.day
$fn$;

COMMENT ON FUNCTION smapds.surface_daily_sm(double precision, timestamptz, timestamptz) IS
    'Daily (UTC day) surface soil moisture per station from observations in [from_time, to_time): '
    'the mean of the G observations of each surface sensor (surface_sensors_at(max_depth_from_m)), '
    'then the mean over replicate sensors, each weighted equally. Days without a G observation '
    'have no row. Give the time range to read only the partitions concerned.';

CREATE VIEW smapds.station_daily_surface_sm AS
SELECT st.station_id, st.network, st.station, d.day, d.soil_moisture, d.n_obs, d.n_sensors
  FROM smapds.surface_daily_sm(smapds.surface_max_depth_m()) d
  JOIN smapds.stations st ON st.station_id = d.station_id;

COMMENT ON VIEW smapds.station_daily_surface_sm IS
    'surface_daily_sm over all time with the depth limit of the setting smapds.surface_max_depth_m '
    '(default 0.05 m), with station names. Filter on station_id (and day); for long records '
    'surface_daily_sm(depth, from, to) reads fewer partitions.';
COMMENT ON COLUMN smapds.station_daily_surface_sm.station_id IS 'The station.';
COMMENT ON COLUMN smapds.station_daily_surface_sm.network IS 'Its network.';
COMMENT ON COLUMN smapds.station_daily_surface_sm.station IS 'Its name.';
COMMENT ON COLUMN smapds.station_daily_surface_sm.day IS 'UTC calendar day.';
COMMENT ON COLUMN smapds.station_daily_surface_sm.soil_moisture IS 'Daily mean soil moisture, m3/m3.';
COMMENT ON COLUMN smapds.station_daily_surface_sm.n_obs IS 'Number of G observations averaged (all sensors).';
COMMENT ON COLUMN smapds.station_daily_surface_sm.n_sensors IS 'Number of replicate sensors with data that day.';

CREATE VIEW smapds.station_latest_surface_sm AS
SELECT st.station_id, st.network, st.station, st.geom,
       latest.sensor_id, latest.time, latest.value, latest.quality_flag
  FROM smapds.stations st
  LEFT JOIN LATERAL (
        SELECT o.sensor_id, o.time, o.value, o.quality_flag
          FROM smapds.surface_sensors ss
          CROSS JOIN LATERAL (
                SELECT o1.sensor_id, o1.time, o1.value, o1.quality_flag
                  FROM smapds.observations o1
                 WHERE o1.sensor_id = ss.sensor_id
                 ORDER BY o1.time DESC
                 LIMIT 1) o
         WHERE ss.station_id = st.station_id
         ORDER BY o.time DESC, o.sensor_id
         LIMIT 1) latest ON true;

COMMENT ON VIEW smapds.station_latest_surface_sm IS
    'Every station with its latest surface soil moisture observation (any quality flag; the flag '
    'is given); NULLs when the station has no surface sensor or no observation.';
COMMENT ON COLUMN smapds.station_latest_surface_sm.station_id IS 'The station.';
COMMENT ON COLUMN smapds.station_latest_surface_sm.network IS 'Its network.';
COMMENT ON COLUMN smapds.station_latest_surface_sm.station IS 'Its name.';
COMMENT ON COLUMN smapds.station_latest_surface_sm.geom IS 'Its location (SRID 4326).';
COMMENT ON COLUMN smapds.station_latest_surface_sm.sensor_id IS 'The surface sensor that gave the latest observation.';
COMMENT ON COLUMN smapds.station_latest_surface_sm.time IS 'Time of the latest observation, UTC.';
COMMENT ON COLUMN smapds.station_latest_surface_sm.value IS 'Its value, m3/m3.';
COMMENT ON COLUMN smapds.station_latest_surface_sm.quality_flag IS 'Its ISMN quality flag.';

CREATE FUNCTION smapds.stations_within(lon double precision, lat double precision,
                                       radius_km double precision)
RETURNS TABLE (station_id integer, network text, station text, station_lon double precision,
               station_lat double precision, distance_km double precision,
               latest_sensor_id integer, latest_time timestamptz, latest_value double precision,
               latest_quality_flag text)
LANGUAGE sql STABLE PARALLEL SAFE
AS $fn$
    SELECT l.station_id, l.network, l.station, ST_X(l.geom), ST_Y(l.geom),
           ST_Distance(l.geom::geography, centre.g) / 1000.0,
           l.sensor_id, l.time, l.value, l.quality_flag
      FROM (SELECT ST_SetSRID(ST_MakePoint(lon, lat), 4326)::geography AS g) centre
      JOIN smapds.station_latest_surface_sm l
        ON ST_DWithin(l.geom::geography, centre.g, radius_km * 1000.0)
     ORDER BY 6, l.station_id
$fn$;

COMMENT ON FUNCTION smapds.stations_within(double precision, double precision, double precision) IS
    'Stations within radius_km (geodesic, WGS84) of (lon, lat), nearest first, with their latest '
    'surface soil moisture observation.';

CREATE FUNCTION smapds.stations_in(area geometry)
RETURNS TABLE (station_id integer, network text, station text, station_lon double precision,
               station_lat double precision, latest_sensor_id integer,
               latest_time timestamptz, latest_value double precision, latest_quality_flag text)
LANGUAGE sql STABLE PARALLEL SAFE
AS $fn$
    SELECT l.station_id, l.network, l.station, ST_X(l.geom), ST_Y(l.geom),
           l.sensor_id, l.time, l.value, l.quality_flag
      FROM smapds.station_latest_surface_sm l
     WHERE ST_Intersects(l.geom, ST_Transform(area, 4326))
     ORDER BY l.network, l.station
$fn$;

COMMENT ON FUNCTION smapds.stations_in(geometry) IS
    'Stations inside (or on the edge of) a polygon, with their latest surface soil moisture '
    'observation. The polygon must carry its SRID (e.g. ST_GeomFromText(wkt, 4326)).';
