-- Logins that cannot exhaust the server and rate limits that do not replace the lock
-- (issue 13, sections 2 and 3).

-- An officer with this right may unlock another officer locked by failed logins
-- (POST /api/v1/ra/officers/{login}/unlock), so a lockout is not a denial of service for the
-- RA. Set with `ca-admin create-officer --can-unlock` or `ca-admin grant-unlock`.
ALTER TABLE ra_officers ADD COLUMN can_unlock boolean NOT NULL DEFAULT false;

-- Failed officer logins for names that do not exist: they lock on the same attempt as real
-- officers, so the answers never tell which logins exist. Purged like unknown subscriber
-- names (housekeeping).
CREATE TABLE unknown_officer_failures (
    login           text PRIMARY KEY CHECK (length(login) BETWEEN 1 AND 64),
    failed_attempts integer NOT NULL CHECK (failed_attempts > 0),
    last_failed_at  timestamptz NOT NULL
);
CREATE INDEX unknown_officer_failures_age_idx ON unknown_officer_failures (last_failed_at);
CREATE INDEX unknown_login_failures_age_idx ON unknown_login_failures (last_failed_at);

-- Token buckets shared by every gateway: one row per (limit, source address or account),
-- keyed by the SHA-256 of "<scope>\0<value>" so that neither addresses nor attempted account
-- names (which may be mistyped passwords) sit here in clear. `tokens` is the level after the
-- last attempt at `updated_at`; the upsert that takes a token computes the refill from
-- `capacity` and `rate` (tokens per second, both from the configuration of the gateway that
-- wrote last). A bucket that has refilled completely means the same as no row and is purged.
CREATE TABLE rate_limit_buckets (
    key_hash   bytea PRIMARY KEY CHECK (length(key_hash) = 32),
    scope      text NOT NULL CHECK (scope ~ '^[a-z_]+$'),
    capacity   double precision NOT NULL CHECK (capacity >= 1),
    rate       double precision NOT NULL CHECK (rate > 0),
    tokens     double precision NOT NULL,
    denied     boolean NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX rate_limit_buckets_age_idx ON rate_limit_buckets (updated_at);

-- Application role: DML on the new tables only. The role name is aligned by the coordinator
-- with the database-roles migration; until that role exists (dev, tests) nothing is granted.
-- ra_officers.can_unlock is read by the gateway (SELECT on the table) but only ever written by
-- ca-admin as the owner: a compromised gateway cannot hand out the unlock right.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ca_app') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON unknown_officer_failures TO ca_app;
        GRANT SELECT, INSERT, UPDATE, DELETE ON rate_limit_buckets TO ca_app;
    END IF;
END
$$;
