-- The application role (the gateway) gets only the DML it needs; the owner (who runs this)
-- keeps the tables, functions and triggers. On the audit log: INSERT and SELECT only, so the
-- gateway can neither rewrite nor remove history, nor ALTER or DROP the append-only triggers
-- (only an owner can). db/roles.py creates the role with its password; where nobody did (a
-- superuser migrating a database of its own) it is made here, without a login.
-- Every later migration that adds a table grants what the gateway needs on it, explicitly.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ca_app') THEN
        CREATE ROLE ca_app NOLOGIN;
    END IF;
END;
$$;

GRANT USAGE ON SCHEMA public TO ca_app;

GRANT SELECT ON schema_migrations TO ca_app;  -- the gateway checks the schema is current
GRANT SELECT, INSERT ON audit_events TO ca_app;

GRANT SELECT, UPDATE ON ra_officers TO ca_app;  -- officers are created by ca-admin
GRANT SELECT, INSERT, UPDATE ON subscribers TO ca_app;  -- UPDATE also for FOR UPDATE locks
GRANT SELECT, INSERT, UPDATE ON accounts TO ca_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON unknown_login_failures TO ca_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON sessions TO ca_app;
GRANT SELECT, INSERT, DELETE ON captcha_challenges TO ca_app;
GRANT SELECT, INSERT ON terms_acceptances TO ca_app;
GRANT SELECT, INSERT, UPDATE ON issuers TO ca_app;  -- synchronised from the issuer manifest
GRANT SELECT, INSERT, UPDATE ON certificates TO ca_app;
GRANT SELECT, INSERT ON revocations TO ca_app;
GRANT SELECT, INSERT, UPDATE ON crl_state TO ca_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON renewal_challenges TO ca_app;
GRANT SELECT, INSERT, UPDATE ON renewal_notices TO ca_app;
GRANT SELECT, INSERT, UPDATE ON ocsp_responses TO ca_app;

REVOKE EXECUTE ON FUNCTION certificates_apply_batch(bigint[], bigint[], text[], bigint[], text[],
    int[], text[], text[], bytea[], timestamptz[], timestamptz[], text[], timestamptz[],
    timestamptz[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION certificates_issue_batch(bigint[], bytea[], text[], timestamptz[],
    timestamptz[], timestamptz, bigint, timestamptz[], text[], text[], text[], jsonb[], bytea[],
    bytea[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION audit_lock_head(bigint) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION audit_events_append_only() FROM PUBLIC;
-- SECURITY INVOKER (the default): they run with the gateway's own privileges above
GRANT EXECUTE ON FUNCTION certificates_apply_batch(bigint[], bigint[], text[], bigint[], text[],
    int[], text[], text[], bytea[], timestamptz[], timestamptz[], text[], timestamptz[],
    timestamptz[]) TO ca_app;
GRANT EXECUTE ON FUNCTION certificates_issue_batch(bigint[], bytea[], text[], timestamptz[],
    timestamptz[], timestamptz, bigint, timestamptz[], text[], text[], text[], jsonb[], bytea[],
    bytea[]) TO ca_app;
GRANT EXECUTE ON FUNCTION audit_lock_head(bigint) TO ca_app;

-- Signed checkpoints of the audit chain's head (db/checkpoints.py, signed by the signer's audit
-- key): a removed tail or a recomputed chain no longer matches the last one signed.
CREATE TABLE audit_checkpoints (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    last_id         bigint NOT NULL CHECK (last_id >= 0),
    last_hash       bytea NOT NULL CHECK (length(last_hash) = 32),
    event_count     bigint NOT NULL CHECK (event_count >= 0 AND event_count <= last_id),
    signed_at       timestamptz NOT NULL,
    key_fingerprint text NOT NULL CHECK (key_fingerprint ~ '^[0-9a-f]{64}$'),
    signature       bytea NOT NULL,
    stored_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_checkpoints_last_id_idx ON audit_checkpoints (last_id);

CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

GRANT SELECT, INSERT ON audit_checkpoints TO ca_app;
