-- smapds 001: PostGIS, the three roles, and the smapds schema.
--
-- Roles (cluster-wide, created only when missing; skipped with a notice where the connecting user
-- may not create roles, e.g. on a managed server whose administrator creates them):
--   smapds_owner   owns every object; never logs in.
--   smapds_writer  the service: reads and writes rows, cannot change the schema.
--   smapds_reader  Grafana and analysts: SELECT only.

CREATE EXTENSION IF NOT EXISTS postgis;

DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'smapds_owner') THEN
        CREATE ROLE smapds_owner NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'smapds_writer') THEN
        CREATE ROLE smapds_writer LOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'smapds_reader') THEN
        CREATE ROLE smapds_reader LOGIN;
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'smapds: cannot create roles as %; objects stay owned by the connecting user',
        current_user;
END
$roles$;

DO $schema$
DECLARE
    as_owner boolean := false;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'smapds_owner') THEN
        as_owner := pg_has_role(current_user, 'smapds_owner', 'MEMBER');
    END IF;
    IF as_owner THEN
        CREATE SCHEMA IF NOT EXISTS smapds AUTHORIZATION smapds_owner;
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO smapds_writer, smapds_reader',
                       current_database());
        GRANT USAGE ON SCHEMA smapds TO smapds_writer, smapds_reader;
        ALTER DEFAULT PRIVILEGES FOR ROLE smapds_owner IN SCHEMA smapds
            GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO smapds_writer;
        ALTER DEFAULT PRIVILEGES FOR ROLE smapds_owner IN SCHEMA smapds
            GRANT USAGE, SELECT ON SEQUENCES TO smapds_writer;
        ALTER DEFAULT PRIVILEGES FOR ROLE smapds_owner IN SCHEMA smapds
            GRANT EXECUTE ON FUNCTIONS TO smapds_writer;
        ALTER DEFAULT PRIVILEGES FOR ROLE smapds_owner IN SCHEMA smapds
            GRANT SELECT ON TABLES TO smapds_reader;
        GRANT SELECT ON public.smapds_migrations TO smapds_writer, smapds_reader;
        REVOKE CREATE ON SCHEMA public FROM PUBLIC;
    ELSE
        CREATE SCHEMA IF NOT EXISTS smapds;
    END IF;
END
$schema$;

COMMENT ON SCHEMA smapds IS 'smapds: granule inventory, run ledger, products, stations, validation';
