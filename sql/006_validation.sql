-- smapds 006: validation statistics of the products against the stations, kept up to date
-- incrementally (service/validate.py).
--
-- Every change to smapds.collocations is logged by a trigger with the row's previous values;
-- the refresh consumes the log, subtracts what the old values had contributed to the additive
-- sums of each station's windows and adds the new ones, moves the windows by whole days, and
-- rewrites the statistics. Its cost follows the changes, not the length of the record.

CREATE TABLE smapds.collocation_changes (
    change_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    domain             text    NOT NULL,
    product_date       date    NOT NULL,
    station_id         integer NOT NULL,
    old_insitu_sm      double precision,
    old_sm_1km         double precision,
    old_sm_1km_uncertainty double precision,
    old_sm_model       double precision,
    old_sm_36km        double precision,
    old_sm_9km         double precision
);
CREATE INDEX collocation_changes_domain_idx ON smapds.collocation_changes (domain, change_id);

COMMENT ON TABLE smapds.collocation_changes IS
    'Change log of smapds.collocations, written by a trigger: one row per inserted, updated or '
    'deleted collocation with the values it had before (NULL for an insert). Consumed and deleted '
    'by the validation refresh in the transaction that applies it.';
COMMENT ON COLUMN smapds.collocation_changes.change_id IS 'Order of the changes.';
COMMENT ON COLUMN smapds.collocation_changes.domain IS 'Domain of the changed row.';
COMMENT ON COLUMN smapds.collocation_changes.product_date IS 'Its product day.';
COMMENT ON COLUMN smapds.collocation_changes.station_id IS 'Its station.';
COMMENT ON COLUMN smapds.collocation_changes.old_insitu_sm IS 'insitu_sm before the change.';
COMMENT ON COLUMN smapds.collocation_changes.old_sm_1km IS 'sm_1km before the change.';
COMMENT ON COLUMN smapds.collocation_changes.old_sm_1km_uncertainty IS 'sm_1km_uncertainty before the change.';
COMMENT ON COLUMN smapds.collocation_changes.old_sm_model IS 'sm_model before the change.';
COMMENT ON COLUMN smapds.collocation_changes.old_sm_36km IS 'sm_36km before the change.';
COMMENT ON COLUMN smapds.collocation_changes.old_sm_9km IS 'sm_9km before the change.';

CREATE FUNCTION smapds.log_collocation_change() RETURNS trigger
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO smapds.collocation_changes (domain, product_date, station_id)
        VALUES (NEW.domain, NEW.product_date, NEW.station_id);
        RETURN NEW;
    END IF;
    INSERT INTO smapds.collocation_changes
        (domain, product_date, station_id, old_insitu_sm, old_sm_1km, old_sm_1km_uncertainty,
         old_sm_model, old_sm_36km, old_sm_9km)
    VALUES (OLD.domain, OLD.product_date, OLD.station_id, OLD.insitu_sm, OLD.sm_1km,
            OLD.sm_1km_uncertainty, OLD.sm_model, OLD.sm_36km, OLD.sm_9km);
    RETURN NULL;
END
$fn$;

COMMENT ON FUNCTION smapds.log_collocation_change() IS
    'Trigger function: logs a collocation change with its previous values into collocation_changes.';

CREATE TRIGGER collocations_log
AFTER INSERT OR UPDATE OR DELETE ON smapds.collocations
FOR EACH ROW EXECUTE FUNCTION smapds.log_collocation_change();

CREATE TABLE smapds.validation_state (
    domain       text        PRIMARY KEY,
    anchor_date  date        NOT NULL,
    layout       jsonb       NOT NULL,
    station_ids  integer[]   NOT NULL,
    sums         bytea       NOT NULL,
    refreshed_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE smapds.validation_state IS
    'Internal state of the incremental validation refresh: per domain, the additive sums '
    '(models/moments.py) of every station, estimate and window ending on anchor_date, as one '
    'float64 array (layout says its shape). Deleting the row forces a full recompute.';
COMMENT ON COLUMN smapds.validation_state.domain IS 'Product domain.';
COMMENT ON COLUMN smapds.validation_state.anchor_date IS 'The last day the windows include.';
COMMENT ON COLUMN smapds.validation_state.layout IS 'Estimates, windows and sums width of the array.';
COMMENT ON COLUMN smapds.validation_state.station_ids IS 'Stations in the order of the array''s station axis.';
COMMENT ON COLUMN smapds.validation_state.sums IS 'float64 array (estimates, windows, stations, width), little-endian.';
COMMENT ON COLUMN smapds.validation_state.refreshed_at IS 'When the refresh last ran.';

CREATE TABLE smapds.validation_stats (
    domain       text    NOT NULL,
    scope        text    NOT NULL CHECK (scope IN ('station', 'network', 'land_cover', 'domain')),
    scope_key    text    NOT NULL,
    window_days  integer NOT NULL CHECK (window_days >= 0),
    estimate     text    NOT NULL
        CHECK (estimate IN ('product_1km', 'model_1km', 'coarse_36km', 'coarse_9km')),
    window_start date,
    window_end   date    NOT NULL,
    n            integer NOT NULL CHECK (n >= 0),
    r            double precision,
    r_p          double precision,
    r_ci_low     double precision,
    r_ci_high    double precision,
    rmse         double precision,
    bias         double precision,
    ubrmse       double precision,
    coverage_90  double precision,
    status       text    NOT NULL
        CHECK (status IN ('OK', 'INSUFFICIENT_DATA', 'DEGENERATE')),
    reason       text,
    stations     integer NOT NULL,
    PRIMARY KEY (domain, scope, scope_key, window_days, estimate)
);

COMMENT ON TABLE smapds.validation_stats IS
    'Agreement of each estimate with the in situ values (collocations, G observations around the '
    'overpass) per station, network, land cover class and the whole domain, over rolling windows '
    'ending on the latest product day and over all time. Group scopes pool the pairs of their '
    'stations. Metrics as models/metrics.py (pytesmo definitions); NULL where the status says a '
    'number would be made up. Spearman''s rho is not kept (ranks are not additive); '
    'smapds report computes it.';
COMMENT ON COLUMN smapds.validation_stats.domain IS 'Product domain.';
COMMENT ON COLUMN smapds.validation_stats.scope IS 'station, network, land_cover or domain.';
COMMENT ON COLUMN smapds.validation_stats.scope_key IS 'station_id, network name, land cover class, or the domain name.';
COMMENT ON COLUMN smapds.validation_stats.window_days IS 'Window length in days ending on window_end; 0 = all time.';
COMMENT ON COLUMN smapds.validation_stats.estimate IS
    'product_1km (the map), model_1km (the model before residual correction), coarse_36km and '
    'coarse_9km (the SMAP retrievals of the station''s cells).';
COMMENT ON COLUMN smapds.validation_stats.window_start IS 'First day of the window (NULL for all time).';
COMMENT ON COLUMN smapds.validation_stats.window_end IS 'Last day of the window (the latest product day).';
COMMENT ON COLUMN smapds.validation_stats.n IS 'Number of (station, day) pairs.';
COMMENT ON COLUMN smapds.validation_stats.r IS 'Pearson R.';
COMMENT ON COLUMN smapds.validation_stats.r_p IS 'Two-sided p-value of R.';
COMMENT ON COLUMN smapds.validation_stats.r_ci_low IS 'Lower bound of the 95 % CI of R (Fisher z).';
COMMENT ON COLUMN smapds.validation_stats.r_ci_high IS 'Upper bound of the 95 % CI of R.';
COMMENT ON COLUMN smapds.validation_stats.rmse IS 'RMSE, m3/m3.';
COMMENT ON COLUMN smapds.validation_stats.bias IS 'mean(estimate) - mean(in situ), m3/m3.';
COMMENT ON COLUMN smapds.validation_stats.ubrmse IS 'Unbiased RMSE, m3/m3.';
COMMENT ON COLUMN smapds.validation_stats.coverage_90 IS
    'product_1km only: fraction of in situ values inside the product''s 90 % interval '
    '(value +- 1.645 x uncertainty); about 0.9 when the uncertainty is calibrated.';
COMMENT ON COLUMN smapds.validation_stats.status IS 'OK, INSUFFICIENT_DATA (n below the minimum) or DEGENERATE (a constant series).';
COMMENT ON COLUMN smapds.validation_stats.reason IS 'Why the status is not OK.';
COMMENT ON COLUMN smapds.validation_stats.stations IS 'Number of stations contributing pairs.';

CREATE INDEX validation_stats_station_idx ON smapds.validation_stats (scope, scope_key);

CREATE TABLE smapds.validation_tc (
    domain        text    NOT NULL,
    scope         text    NOT NULL CHECK (scope IN ('station', 'domain')),
    scope_key     text    NOT NULL,
    window_days   integer NOT NULL CHECK (window_days >= 0),
    window_end    date    NOT NULL,
    n             integer NOT NULL,
    err_std_insitu double precision,
    err_std_product double precision,
    err_std_coarse double precision,
    snr_db_insitu double precision,
    snr_db_product double precision,
    snr_db_coarse double precision,
    sensitivity_insitu double precision,
    sensitivity_product double precision,
    sensitivity_coarse double precision,
    status        text    NOT NULL
        CHECK (status IN ('OK', 'INSUFFICIENT_DATA', 'DEGENERATE', 'NEGATIVE_VARIANCE')),
    reason        text,
    PRIMARY KEY (domain, scope, scope_key, window_days)
);

COMMENT ON TABLE smapds.validation_tc IS
    'Triple collocation (covariance method, models/metrics.py) of (in situ, 1 km product, 36 km '
    'retrieval) per station and pooled over the domain. Caveat: the product is corrected to the '
    'retrieval, so their errors are not independent as TC assumes; read the error of the product '
    'with that in mind (NEGATIVE_VARIANCE is the usual symptom).';
COMMENT ON COLUMN smapds.validation_tc.domain IS 'Product domain.';
COMMENT ON COLUMN smapds.validation_tc.scope IS 'station or domain.';
COMMENT ON COLUMN smapds.validation_tc.scope_key IS 'station_id or the domain name.';
COMMENT ON COLUMN smapds.validation_tc.window_days IS 'Window length in days; 0 = all time.';
COMMENT ON COLUMN smapds.validation_tc.window_end IS 'Last day of the window.';
COMMENT ON COLUMN smapds.validation_tc.n IS 'Number of triplets.';
COMMENT ON COLUMN smapds.validation_tc.err_std_insitu IS 'Random error standard deviation of the in situ values, m3/m3.';
COMMENT ON COLUMN smapds.validation_tc.err_std_product IS 'Of the 1 km product, m3/m3.';
COMMENT ON COLUMN smapds.validation_tc.err_std_coarse IS 'Of the 36 km retrieval, m3/m3.';
COMMENT ON COLUMN smapds.validation_tc.snr_db_insitu IS 'Signal-to-noise ratio of the in situ values, dB.';
COMMENT ON COLUMN smapds.validation_tc.snr_db_product IS 'Of the product, dB.';
COMMENT ON COLUMN smapds.validation_tc.snr_db_coarse IS 'Of the retrieval, dB.';
COMMENT ON COLUMN smapds.validation_tc.sensitivity_insitu IS 'Data-scaled sensitivity (b * sigma_T) of the in situ values, m3/m3.';
COMMENT ON COLUMN smapds.validation_tc.sensitivity_product IS 'Of the product, m3/m3.';
COMMENT ON COLUMN smapds.validation_tc.sensitivity_coarse IS 'Of the retrieval, m3/m3.';
COMMENT ON COLUMN smapds.validation_tc.status IS 'OK, INSUFFICIENT_DATA, DEGENERATE or NEGATIVE_VARIANCE.';
COMMENT ON COLUMN smapds.validation_tc.reason IS 'Why the status is not OK.';

CREATE TABLE smapds.validation_history (
    domain      text    NOT NULL,
    window_end  date    NOT NULL,
    window_days integer NOT NULL,
    estimate    text    NOT NULL,
    n           integer NOT NULL,
    r           double precision,
    rmse        double precision,
    bias        double precision,
    ubrmse      double precision,
    coverage_90 double precision,
    status      text    NOT NULL,
    PRIMARY KEY (domain, window_end, window_days, estimate)
);

COMMENT ON TABLE smapds.validation_history IS
    'The domain-wide rows of validation_stats as they were at each refresh, by window_end: the '
    'statistics over time (Grafana plots these).';
COMMENT ON COLUMN smapds.validation_history.domain IS 'Product domain.';
COMMENT ON COLUMN smapds.validation_history.window_end IS 'Last day of the window.';
COMMENT ON COLUMN smapds.validation_history.window_days IS 'Window length in days; 0 = all time.';
COMMENT ON COLUMN smapds.validation_history.estimate IS 'As validation_stats.estimate.';
COMMENT ON COLUMN smapds.validation_history.n IS 'Pairs.';
COMMENT ON COLUMN smapds.validation_history.r IS 'Pearson R.';
COMMENT ON COLUMN smapds.validation_history.rmse IS 'RMSE, m3/m3.';
COMMENT ON COLUMN smapds.validation_history.bias IS 'Bias, m3/m3.';
COMMENT ON COLUMN smapds.validation_history.ubrmse IS 'ubRMSE, m3/m3.';
COMMENT ON COLUMN smapds.validation_history.coverage_90 IS 'Coverage of the 90 % interval (product_1km).';
COMMENT ON COLUMN smapds.validation_history.status IS 'As validation_stats.status.';

-- ---------------------------------------------------------------------------------------------
-- what analysts and Grafana query
-- ---------------------------------------------------------------------------------------------

CREATE VIEW smapds.station_statistics AS
SELECT v.domain, st.station_id, st.network, st.station, st.geom, v.window_days, v.window_end,
       v.estimate, v.n, v.r, v.r_ci_low, v.r_ci_high, v.rmse, v.bias, v.ubrmse, v.coverage_90,
       v.status, v.reason
  FROM smapds.validation_stats v
  JOIN smapds.stations st ON v.scope = 'station' AND st.station_id = v.scope_key::integer;

COMMENT ON VIEW smapds.station_statistics IS
    'Per-station statistics with names and locations: filter on window_days (0 = all time) and '
    'estimate; e.g. a map of R of product_1km over 90 days.';
COMMENT ON COLUMN smapds.station_statistics.domain IS 'Product domain.';
COMMENT ON COLUMN smapds.station_statistics.station_id IS 'The station.';
COMMENT ON COLUMN smapds.station_statistics.network IS 'Its network.';
COMMENT ON COLUMN smapds.station_statistics.station IS 'Its name.';
COMMENT ON COLUMN smapds.station_statistics.geom IS 'Its location (SRID 4326).';
COMMENT ON COLUMN smapds.station_statistics.window_days IS 'Window in days; 0 = all time.';
COMMENT ON COLUMN smapds.station_statistics.window_end IS 'Last day of the window.';
COMMENT ON COLUMN smapds.station_statistics.estimate IS 'Which estimate.';
COMMENT ON COLUMN smapds.station_statistics.n IS 'Pairs.';
COMMENT ON COLUMN smapds.station_statistics.r IS 'Pearson R.';
COMMENT ON COLUMN smapds.station_statistics.r_ci_low IS '95 % CI lower bound.';
COMMENT ON COLUMN smapds.station_statistics.r_ci_high IS '95 % CI upper bound.';
COMMENT ON COLUMN smapds.station_statistics.rmse IS 'RMSE, m3/m3.';
COMMENT ON COLUMN smapds.station_statistics.bias IS 'Bias, m3/m3.';
COMMENT ON COLUMN smapds.station_statistics.ubrmse IS 'ubRMSE, m3/m3.';
COMMENT ON COLUMN smapds.station_statistics.coverage_90 IS 'Coverage of the 90 % interval.';
COMMENT ON COLUMN smapds.station_statistics.status IS 'Status.';
COMMENT ON COLUMN smapds.station_statistics.reason IS 'Why not OK.';

CREATE FUNCTION smapds.stations_within_stats(lon double precision, lat double precision,
                                             radius_km double precision,
                                             window_days integer DEFAULT 90,
                                             estimate text DEFAULT 'product_1km')
RETURNS TABLE (station_id integer, network text, station text, distance_km double precision,
               n integer, r double precision, rmse double precision, bias double precision,
               ubrmse double precision, status text, window_end date)
LANGUAGE sql STABLE PARALLEL SAFE
AS $fn$
    SELECT s.station_id, s.network, s.station,
           ST_Distance(s.geom::geography, c.g) / 1000.0, s.n, s.r, s.rmse, s.bias, s.ubrmse,
           s.status, s.window_end
      FROM (SELECT ST_SetSRID(ST_MakePoint(lon, lat), 4326)::geography AS g) c
      JOIN smapds.station_statistics s
        ON ST_DWithin(s.geom::geography, c.g, radius_km * 1000.0)
     WHERE s.window_days = stations_within_stats.window_days
       AND s.estimate = stations_within_stats.estimate
     ORDER BY 4, s.station_id
$fn$;

COMMENT ON FUNCTION smapds.stations_within_stats(double precision, double precision, double precision, integer, text) IS
    'Stations within radius_km of (lon, lat), nearest first, with their latest statistics for one '
    'window (days; 0 = all time) and estimate.';

CREATE FUNCTION smapds.stations_in_stats(area geometry, window_days integer DEFAULT 90,
                                         estimate text DEFAULT 'product_1km')
RETURNS SETOF smapds.station_statistics
LANGUAGE sql STABLE PARALLEL SAFE
AS $fn$
    SELECT * FROM smapds.station_statistics s
     WHERE ST_Intersects(s.geom, ST_Transform(area, 4326))
       AND s.window_days = stations_in_stats.window_days
       AND s.estimate = stations_in_stats.estimate
     ORDER BY s.network, s.station
$fn$;

COMMENT ON FUNCTION smapds.stations_in_stats(geometry, integer, text) IS
    'Stations inside a polygon (with its SRID) with their latest statistics for one window and estimate.';

CREATE VIEW smapds.product_uncertainty AS
SELECT p.domain, p.product_date, p.unc_mean, p.unc_p10, p.unc_p50, p.unc_p90,
       count(c.insitu_sm) FILTER (WHERE c.sm_1km IS NOT NULL AND c.sm_1km_uncertainty IS NOT NULL)
           AS n_stations,
       avg((abs(c.insitu_sm - c.sm_1km) <= 1.6448536269514722 * c.sm_1km_uncertainty)::integer)
           FILTER (WHERE c.insitu_sm IS NOT NULL AND c.sm_1km IS NOT NULL
                     AND c.sm_1km_uncertainty IS NOT NULL) AS coverage_90
  FROM smapds.products p
  LEFT JOIN smapds.collocations c
    ON c.domain = p.domain AND c.product_date = p.product_date
 GROUP BY p.domain, p.product_date, p.unc_mean, p.unc_p10, p.unc_p50, p.unc_p90;

COMMENT ON VIEW smapds.product_uncertainty IS
    'Per day and domain: the distribution of the per-pixel uncertainty (mean, percentiles, m3/m3) '
    'and its calibration at the stations: the fraction of in situ values inside value +- 1.645 x '
    'uncertainty (the 90 % interval if errors were normal; station representativeness error is not '
    'in the band, so expect less).';
COMMENT ON COLUMN smapds.product_uncertainty.domain IS 'Product domain.';
COMMENT ON COLUMN smapds.product_uncertainty.product_date IS 'Product day.';
COMMENT ON COLUMN smapds.product_uncertainty.unc_mean IS 'Mean uncertainty, m3/m3.';
COMMENT ON COLUMN smapds.product_uncertainty.unc_p10 IS '10th percentile, m3/m3.';
COMMENT ON COLUMN smapds.product_uncertainty.unc_p50 IS 'Median, m3/m3.';
COMMENT ON COLUMN smapds.product_uncertainty.unc_p90 IS '90th percentile, m3/m3.';
COMMENT ON COLUMN smapds.product_uncertainty.n_stations IS 'Stations with an in situ value and a product value that day.';
COMMENT ON COLUMN smapds.product_uncertainty.coverage_90 IS 'Fraction of them inside the 90 % interval.';
