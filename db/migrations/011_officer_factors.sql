-- A second factor for RA officers: WebAuthn credentials and TOTP secrets (officer_factors), the
-- short-lived single-use challenges of enrolment and login (officer_factor_challenges), the
-- state of an officer session whose password was right but whose second factor is still due
-- (sessions.officer_factor) and the count of failed second-factor attempts.

CREATE TABLE officer_factors (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    officer_id     bigint NOT NULL REFERENCES ra_officers (id) ON DELETE CASCADE,
    kind           text NOT NULL CHECK (kind IN ('webauthn', 'totp')),
    name           text NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
    -- WebAuthn: the credential id (unique across the service), its COSE public key and the
    -- authenticator's signature counter as last seen (a counter that does not grow is refused)
    credential_id  bytea UNIQUE CHECK (length(credential_id) BETWEEN 16 AND 1023),
    public_key     bytea,
    sign_count     bigint NOT NULL DEFAULT 0 CHECK (sign_count >= 0),
    -- TOTP (RFC 6238): the base32 secret and the last time step accepted, so that a code is
    -- good once per period
    totp_secret    text CHECK (totp_secret ~ '^[A-Z2-7]{32}$'),
    totp_last_step bigint,
    created_at     timestamptz NOT NULL,
    last_used_at   timestamptz,
    CHECK ((kind = 'webauthn' AND credential_id IS NOT NULL AND public_key IS NOT NULL
            AND totp_secret IS NULL)
        OR (kind = 'totp' AND totp_secret IS NOT NULL AND credential_id IS NULL
            AND public_key IS NULL))
);
CREATE INDEX officer_factors_officer_idx ON officer_factors (officer_id);

-- One row per outstanding ceremony, bound to the session that asked for it; taken (deleted)
-- by the attempt that answers it, whether that attempt succeeds or not.
CREATE TABLE officer_factor_challenges (
    id           text PRIMARY KEY CHECK (length(id) BETWEEN 16 AND 64),
    session_hash bytea NOT NULL REFERENCES sessions (id_hash) ON DELETE CASCADE,
    officer_id   bigint NOT NULL REFERENCES ra_officers (id) ON DELETE CASCADE,
    purpose      text NOT NULL
                 CHECK (purpose IN ('webauthn_enrol', 'webauthn_login', 'totp_enrol')),
    -- WebAuthn: the challenge bytes; totp_enrol: the proposed secret (base32, ASCII)
    challenge    bytea NOT NULL CHECK (length(challenge) BETWEEN 16 AND 64),
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL CHECK (expires_at > created_at)
);
CREATE INDEX officer_factor_challenges_session_idx ON officer_factor_challenges (session_hash);
CREATE INDEX officer_factor_challenges_expiry_idx ON officer_factor_challenges (expires_at);

-- NULL: a complete session (every subscriber session, and officers after both factors).
-- 'verify': the password was right, a second factor must follow; 'enrol': the officer has no
-- factor while [gateway] officer_second_factor = "required", and may only enrol one.
ALTER TABLE sessions ADD COLUMN officer_factor text
    CHECK (officer_factor IS NULL OR (officer_factor IN ('verify', 'enrol') AND kind = 'officer'));

-- Failed second-factor attempts since the officer's last complete login. Kept apart from
-- failed_attempts, which a right password resets: otherwise password, four wrong codes,
-- password again... would guess TOTP codes without ever locking. Reaching the officer lock
-- threshold locks the officer (locked_at) and starts this count again from 0.
ALTER TABLE ra_officers ADD COLUMN second_factor_failures integer NOT NULL DEFAULT 0
    CHECK (second_factor_failures >= 0);

-- The application role (006_app_role.sql makes it) gets the DML the gateway needs on the new
-- tables. Where it does not exist (a database migrated without the roles), nothing to grant.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ca_app') THEN
        -- factors are enrolled and used by the gateway; ca-admin (the owner) removes them
        GRANT SELECT, INSERT, UPDATE ON officer_factors TO ca_app;
        GRANT SELECT, INSERT, DELETE ON officer_factor_challenges TO ca_app;
    END IF;
END;
$$;
