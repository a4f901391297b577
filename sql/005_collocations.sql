-- smapds 005: collocation of stations with the daily products; the products' uncertainty summary.
--
-- A collocation row pairs, for one product day and one station, the in situ surface soil moisture
-- around the satellite overpass with the product's values at the station's 1 km pixel and the
-- coarse retrievals at its 36 km and 9 km cells. Rows are written by service/collocate.py with
-- upserts that change a row only when a value differs; every change takes a new revision from
-- collocation_revision, which is how the validation refresh finds what changed since it last ran.

ALTER TABLE smapds.products
    ADD COLUMN unc_mean double precision,
    ADD COLUMN unc_p10  double precision,
    ADD COLUMN unc_p50  double precision,
    ADD COLUMN unc_p90  double precision;

COMMENT ON COLUMN smapds.products.unc_mean IS 'Mean per-pixel uncertainty (spread of the trees) over predicted land pixels, m3/m3.';
COMMENT ON COLUMN smapds.products.unc_p10 IS '10th percentile of the per-pixel uncertainty, m3/m3.';
COMMENT ON COLUMN smapds.products.unc_p50 IS 'Median per-pixel uncertainty, m3/m3.';
COMMENT ON COLUMN smapds.products.unc_p90 IS '90th percentile of the per-pixel uncertainty, m3/m3.';

CREATE SEQUENCE smapds.collocation_revision AS bigint;
COMMENT ON SEQUENCE smapds.collocation_revision IS
    'Revision numbers of collocation rows: a row takes the next one whenever it is inserted or a value changes.';

CREATE TABLE smapds.collocations (
    domain             text        NOT NULL,
    product_date       date        NOT NULL,
    station_id         integer     NOT NULL REFERENCES smapds.stations ON DELETE CASCADE,
    insitu_sm          double precision CHECK (insitu_sm IS NULL OR insitu_sm BETWEEN 0 AND 1),
    insitu_n           integer     NOT NULL DEFAULT 0 CHECK (insitu_n >= 0),
    insitu_sensors     integer     NOT NULL DEFAULT 0 CHECK (insitu_sensors >= 0),
    window_start       timestamptz NOT NULL,
    window_end         timestamptz NOT NULL CHECK (window_end > window_start),
    sm_1km             double precision,
    sm_1km_uncertainty double precision,
    qa_1km             smallint,
    sm_model           double precision,
    sm_36km            double precision,
    sm_9km             double precision,
    revision           bigint      NOT NULL DEFAULT nextval('smapds.collocation_revision'),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (domain, product_date, station_id),
    FOREIGN KEY (domain, product_date) REFERENCES smapds.products ON DELETE CASCADE,
    CONSTRAINT collocations_insitu_ck CHECK ((insitu_sm IS NULL) = (insitu_n = 0))
);
CREATE INDEX collocations_station_idx ON smapds.collocations (station_id, product_date);
CREATE INDEX collocations_revision_idx ON smapds.collocations (domain, revision);

COMMENT ON TABLE smapds.collocations IS
    'One row per product day and station of the domain with a surface soil moisture sensor: the in '
    'situ value around the overpass and the product and coarse values at the station. Idempotent '
    'per day (service/collocate.py); NULL where a side has no value.';
COMMENT ON COLUMN smapds.collocations.domain IS 'Product domain.';
COMMENT ON COLUMN smapds.collocations.product_date IS 'Product day (UTC).';
COMMENT ON COLUMN smapds.collocations.station_id IS 'The station.';
COMMENT ON COLUMN smapds.collocations.insitu_sm IS
    'In situ surface soil moisture, m3/m3: the mean of the G observations of each surface sensor '
    'inside [window_start, window_end], then the mean over the station''s replicate sensors.';
COMMENT ON COLUMN smapds.collocations.insitu_n IS 'Number of G observations used (all sensors); 0 when none.';
COMMENT ON COLUMN smapds.collocations.insitu_sensors IS 'Number of surface sensors that contributed.';
COMMENT ON COLUMN smapds.collocations.window_start IS
    'Start of the overpass window (UTC): the overpass in local solar time (longitude / 15 h from '
    'UTC) on the product day, minus the half-width.';
COMMENT ON COLUMN smapds.collocations.window_end IS 'End of the overpass window (UTC).';
COMMENT ON COLUMN smapds.collocations.sm_1km IS 'The product''s soil moisture at the station''s 1 km pixel, m3/m3.';
COMMENT ON COLUMN smapds.collocations.sm_1km_uncertainty IS 'The product''s per-pixel uncertainty there (one standard deviation), m3/m3.';
COMMENT ON COLUMN smapds.collocations.qa_1km IS 'The product''s QA bits there (models.downscale.QA_BITS).';
COMMENT ON COLUMN smapds.collocations.sm_model IS 'The model''s own prediction there before residual correction, m3/m3.';
COMMENT ON COLUMN smapds.collocations.sm_36km IS 'The 36 km retrieval (SPL3SMP, preferred pass first) of the station''s cell, m3/m3.';
COMMENT ON COLUMN smapds.collocations.sm_9km IS 'The 9 km retrieval (SPL3SMP_E, preferred pass first) of the station''s cell, m3/m3.';
COMMENT ON COLUMN smapds.collocations.revision IS 'Taken from collocation_revision when the row was inserted or last changed.';
COMMENT ON COLUMN smapds.collocations.updated_at IS 'When the row was inserted or last changed.';

CREATE FUNCTION smapds.insitu_overpass_sm(day date, overpass_hour double precision,
                                          half_window_hours double precision,
                                          max_depth_from_m double precision)
RETURNS TABLE (station_id integer, soil_moisture double precision, n_obs integer,
               n_sensors integer, window_start timestamptz, window_end timestamptz)
LANGUAGE sql STABLE PARALLEL SAFE
AS $fn$
    WITH win AS (
        SELECT st.station_id,
               (day::timestamp AT TIME ZONE 'UTC')
                 + make_interval(secs => (overpass_hour - half_window_hours - ST_X(st.geom) / 15.0) * 3600.0)
                   AS w0,
               (day::timestamp AT TIME ZONE 'UTC')
                 + make_interval(secs => (overpass_hour + half_window_hours - ST_X(st.geom) / 15.0) * 3600.0)
                   AS w1
          FROM smapds.stations st
    ), per_sensor AS (
        SELECT w.station_id, o.sensor_id, avg(o.value ORDER BY o.time) AS value, count(*) AS n
          FROM win w
          JOIN smapds.surface_sensors_at(max_depth_from_m) ss ON ss.station_id = w.station_id
          JOIN smapds.observations o
            ON o.sensor_id = ss.sensor_id AND o.time >= w.w0 AND o.time <= w.w1
         WHERE o.quality_flag = 'G'
           -- partition pruning: the windows of a day lie within a day and a half of it
           AND o.time >= (day::timestamp AT TIME ZONE 'UTC') - interval '36 hours'
           AND o.time <  (day::timestamp AT TIME ZONE 'UTC') + interval '60 hours'
         GROUP BY w.station_id, o.sensor_id
    )
    SELECT w.station_id, avg(p.value ORDER BY p.sensor_id), coalesce(sum(p.n), 0)::integer, count(p.sensor_id)::integer,
           w.w0, w.w1
      FROM win w
      LEFT JOIN per_sensor p ON p.station_id = w.station_id
     GROUP BY w.station_id, w.w0, w.w1
$fn$;

COMMENT ON FUNCTION smapds.insitu_overpass_sm(date, double precision, double precision, double precision) IS
    'Per station, the surface soil moisture around a satellite overpass on a day: the overpass '
    'at overpass_hour local solar time (UTC + longitude / 15 h), +- half_window_hours; the mean '
    'of the G observations of each surface sensor (surface_sensors_at(max_depth_from_m)) in the '
    'window, then the mean over replicate sensors. Stations without one have soil_moisture NULL '
    'and n_obs 0. SMAP: 6 (descending, AM) or 18 (ascending, PM). Sums run in a fixed order '
    '(time, sensor), so the same observations always give the same bits.';

CREATE VIEW smapds.station_vs_product AS
SELECT c.domain, c.station_id, st.network, st.station, c.product_date, c.insitu_sm, c.insitu_n,
       c.sm_1km, c.sm_1km_uncertainty, c.qa_1km, c.sm_model, c.sm_36km, c.sm_9km, st.geom
  FROM smapds.collocations c
  JOIN smapds.stations st ON st.station_id = c.station_id;

COMMENT ON VIEW smapds.station_vs_product IS
    'A station''s time series against the 1 km map, the model''s own prediction and the coarse '
    'retrievals: filter on station_id (or network and station) and product_date.';
COMMENT ON COLUMN smapds.station_vs_product.domain IS 'Product domain.';
COMMENT ON COLUMN smapds.station_vs_product.station_id IS 'The station.';
COMMENT ON COLUMN smapds.station_vs_product.network IS 'Its network.';
COMMENT ON COLUMN smapds.station_vs_product.station IS 'Its name.';
COMMENT ON COLUMN smapds.station_vs_product.product_date IS 'Product day (UTC).';
COMMENT ON COLUMN smapds.station_vs_product.insitu_sm IS 'In situ value around the overpass, m3/m3.';
COMMENT ON COLUMN smapds.station_vs_product.insitu_n IS 'Observations averaged.';
COMMENT ON COLUMN smapds.station_vs_product.sm_1km IS 'The 1 km product at the station, m3/m3.';
COMMENT ON COLUMN smapds.station_vs_product.sm_1km_uncertainty IS 'Its uncertainty, m3/m3.';
COMMENT ON COLUMN smapds.station_vs_product.qa_1km IS 'Its QA bits.';
COMMENT ON COLUMN smapds.station_vs_product.sm_model IS 'The model before correction, m3/m3.';
COMMENT ON COLUMN smapds.station_vs_product.sm_36km IS 'The 36 km retrieval, m3/m3.';
COMMENT ON COLUMN smapds.station_vs_product.sm_9km IS 'The 9 km retrieval, m3/m3.';
COMMENT ON COLUMN smapds.station_vs_product.geom IS 'Station location (SRID 4326).';
