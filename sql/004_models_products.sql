-- smapds 004: frozen models and daily products.

CREATE TABLE smapds.models (
    name          text        PRIMARY KEY,
    kind          text        NOT NULL CHECK (kind IN ('rf', 'xgb', 'mlp', 'hgb')),
    path          text        NOT NULL,
    sha256        text        NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    domain        text        NOT NULL,
    train_start   date        NOT NULL,
    train_end     date        NOT NULL CHECK (train_end >= train_start),
    features      jsonb       NOT NULL,
    scores        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    active        boolean     NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX models_one_active_per_domain ON smapds.models (domain) WHERE active;

COMMENT ON TABLE smapds.models IS
    'Frozen downscaling models (artifact directories); the service uses the active one per domain.';
COMMENT ON COLUMN smapds.models.name IS 'Artifact name (directory name under data_dir/models).';
COMMENT ON COLUMN smapds.models.kind IS 'rf, xgb, mlp or hgb.';
COMMENT ON COLUMN smapds.models.path IS 'Artifact directory, relative to the data directory.';
COMMENT ON COLUMN smapds.models.sha256 IS 'sha256 of the artifact manifest (which pins every file).';
COMMENT ON COLUMN smapds.models.features IS 'Feature names and units, in the order the model takes them.';
COMMENT ON COLUMN smapds.models.scores IS 'Cross-validation and hold-out scores at coarse scale.';
COMMENT ON COLUMN smapds.models.active IS 'The model the daily product uses (one per domain).';
COMMENT ON COLUMN smapds.models.train_start IS 'First day of the training period (UTC).';
COMMENT ON COLUMN smapds.models.train_end IS 'Last day of the training period (UTC).';
COMMENT ON COLUMN smapds.models.domain IS 'Domain the model was trained on.';
COMMENT ON COLUMN smapds.models.created_at IS 'When the artifact was registered.';

CREATE TABLE smapds.products (
    domain              text        NOT NULL,
    product_date        date        NOT NULL,
    path                text        NOT NULL,
    sha256              text        NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    stac_path           text        NOT NULL,
    model_name          text        NOT NULL REFERENCES smapds.models (name),
    model_sha256        text        NOT NULL,
    status              text        NOT NULL CHECK (status IN ('OK', 'DEGRADED')),
    valid_fraction      double precision NOT NULL CHECK (valid_fraction BETWEEN 0 AND 1),
    gap_filled_fraction double precision NOT NULL CHECK (gap_filled_fraction BETWEEN 0 AND 1),
    sm_min              double precision,
    sm_mean             double precision,
    sm_max              double precision,
    consistency_r       double precision,
    consistency_rmse    double precision,
    model_r             double precision,
    model_rmse          double precision,
    footprint           geometry(Polygon, 4326) NOT NULL,
    inputs              jsonb       NOT NULL,
    software_version    text        NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (domain, product_date)
);

COMMENT ON TABLE smapds.products IS
    'One registered daily 1 km product per domain and day (COG + STAC item); written after the files '
    'are in place, in one transaction, so a row always points at a complete file.';
COMMENT ON COLUMN smapds.products.path IS 'COG path relative to the data directory.';
COMMENT ON COLUMN smapds.products.sha256 IS 'sha256 of the COG.';
COMMENT ON COLUMN smapds.products.stac_path IS 'STAC item path relative to the data directory.';
COMMENT ON COLUMN smapds.products.model_name IS 'The frozen model that produced the map.';
COMMENT ON COLUMN smapds.products.model_sha256 IS 'sha256 of that model artifact.';
COMMENT ON COLUMN smapds.products.status IS 'OK, or DEGRADED when an input was staler than its limit.';
COMMENT ON COLUMN smapds.products.valid_fraction IS 'Fraction of land pixels with a value.';
COMMENT ON COLUMN smapds.products.gap_filled_fraction IS 'Fraction of land pixels without a valid retrieval in their 36 km cell.';
COMMENT ON COLUMN smapds.products.sm_min IS 'Minimum soil moisture (m3/m3).';
COMMENT ON COLUMN smapds.products.sm_mean IS 'Mean soil moisture over valid pixels (m3/m3).';
COMMENT ON COLUMN smapds.products.sm_max IS 'Maximum soil moisture (m3/m3).';
COMMENT ON COLUMN smapds.products.consistency_r IS 'Pearson R of the map aggregated to 36 km against the retrieval.';
COMMENT ON COLUMN smapds.products.consistency_rmse IS 'RMSE (m3/m3) of the map aggregated to 36 km against the retrieval.';
COMMENT ON COLUMN smapds.products.model_r IS 'Pearson R at 36 km of the model''s own prediction (before correction) against the retrieval: the honest skill figure.';
COMMENT ON COLUMN smapds.products.model_rmse IS 'RMSE (m3/m3) at 36 km of the model''s own prediction against the retrieval.';
COMMENT ON COLUMN smapds.products.footprint IS 'The product''s extent in lon/lat.';
CREATE INDEX products_footprint_idx ON smapds.products USING gist (footprint);
COMMENT ON COLUMN smapds.products.inputs IS 'Input granules (source, id, sha256) and their staleness.';
COMMENT ON COLUMN smapds.products.software_version IS 'smapds version that wrote the product.';
COMMENT ON COLUMN smapds.products.created_at IS 'When the product was registered.';
