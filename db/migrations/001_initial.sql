-- Subscribers, accounts, RA officers, sessions, captcha challenges, terms acceptances,
-- issuers, certificates, revocations and the hash-chained audit log.

CREATE TABLE ra_officers (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    login           text NOT NULL UNIQUE CHECK (login ~ '^[a-z0-9][a-z0-9._-]{1,63}$'),
    password_hash   text NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    failed_attempts integer NOT NULL DEFAULT 0 CHECK (failed_attempts >= 0),
    locked_at       timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE subscribers (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id_number     text NOT NULL UNIQUE CHECK (length(id_number) BETWEEN 1 AND 64),
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    email         text NOT NULL CHECK (length(email) BETWEEN 3 AND 254 AND email LIKE '%_@_%'),
    phone         text NOT NULL DEFAULT '' CHECK (length(phone) <= 64),
    address       text NOT NULL DEFAULT '' CHECK (length(address) <= 500),
    subject_cn    text NOT NULL UNIQUE CHECK (length(subject_cn) BETWEEN 1 AND 64),
    subject_ou    text[] NOT NULL DEFAULT '{}',
    subject_o     text NOT NULL DEFAULT '' CHECK (length(subject_o) <= 64),
    subject_c     text NOT NULL DEFAULT 'TW' CHECK (subject_c ~ '^[A-Z]{2}$'),
    usages        text[] NOT NULL
                  CHECK (cardinality(usages) >= 1
                         AND usages <@ ARRAY['signing', 'encryption']::text[]),
    registered_by bigint REFERENCES ra_officers (id),
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE accounts (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscriber_id        bigint NOT NULL UNIQUE REFERENCES subscribers (id),
    account              text NOT NULL UNIQUE CHECK (account ~ '^[a-z][a-z0-9]{5,31}$'),
    password_hash        text NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    must_change_password boolean NOT NULL DEFAULT true,
    failed_attempts      integer NOT NULL DEFAULT 0 CHECK (failed_attempts >= 0),
    locked_at            timestamptz,
    password_changed_at  timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now()
);

-- Failed logins for account names that do not exist, so that they lock exactly like real
-- accounts and nothing tells the two apart.
CREATE TABLE unknown_login_failures (
    account         text PRIMARY KEY CHECK (length(account) BETWEEN 1 AND 64),
    failed_attempts integer NOT NULL CHECK (failed_attempts > 0),
    last_failed_at  timestamptz NOT NULL
);

CREATE TABLE sessions (
    id_hash      bytea PRIMARY KEY CHECK (length(id_hash) = 32),
    kind         text NOT NULL CHECK (kind IN ('subscriber', 'officer')),
    account_id   bigint REFERENCES accounts (id) ON DELETE CASCADE,
    officer_id   bigint REFERENCES ra_officers (id) ON DELETE CASCADE,
    csrf_hash    bytea NOT NULL CHECK (length(csrf_hash) = 32),
    created_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    CHECK ((kind = 'subscriber' AND account_id IS NOT NULL AND officer_id IS NULL)
        OR (kind = 'officer' AND officer_id IS NOT NULL AND account_id IS NULL))
);
CREATE INDEX sessions_account_idx ON sessions (account_id) WHERE account_id IS NOT NULL;
CREATE INDEX sessions_officer_idx ON sessions (officer_id) WHERE officer_id IS NOT NULL;

CREATE TABLE captcha_challenges (
    id          text PRIMARY KEY CHECK (length(id) BETWEEN 16 AND 64),
    answer_hash bytea NOT NULL CHECK (length(answer_hash) = 32),
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL CHECK (expires_at > created_at)
);
CREATE INDEX captcha_challenges_expiry_idx ON captcha_challenges (expires_at);

CREATE TABLE terms_acceptances (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id    bigint NOT NULL REFERENCES accounts (id),
    terms_version text NOT NULL CHECK (length(terms_version) BETWEEN 1 AND 32),
    accepted_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (account_id, terms_version)
);

CREATE TABLE issuers (
    id         integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9-]+$'),
    subject    text NOT NULL,
    cert_der   bytea NOT NULL,
    not_before timestamptz NOT NULL,
    not_after  timestamptz NOT NULL CHECK (not_after > not_before),
    active     boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE certificates (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- lower-case hex, no leading zeros, at least 64 bits of randomness; unique service-wide
    serial             text NOT NULL UNIQUE CHECK (serial ~ '^[1-9a-f][0-9a-f]{15,39}$'),
    issuer_id          integer NOT NULL REFERENCES issuers (id),
    subscriber_id      bigint NOT NULL REFERENCES subscribers (id),
    usage              text NOT NULL CHECK (usage IN ('signing', 'encryption')),
    profile            text NOT NULL CHECK (length(profile) BETWEEN 1 AND 64),
    status             text NOT NULL DEFAULT 'pending'
                       CHECK (status IN ('pending', 'issued', 'failed')),
    subject            text NOT NULL,
    public_key_sha256  bytea NOT NULL CHECK (length(public_key_sha256) = 32),
    der                bytea,
    not_before         timestamptz NOT NULL,
    not_after          timestamptz NOT NULL CHECK (not_after > not_before),
    terms_version      text,
    renewed_from       bigint UNIQUE REFERENCES certificates (id),
    superseded_by      bigint UNIQUE REFERENCES certificates (id),
    failure_reason     text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    issued_at          timestamptz,
    downloaded_at      timestamptz,
    UNIQUE (issuer_id, serial),
    CHECK ((status = 'issued') = (der IS NOT NULL AND issued_at IS NOT NULL)),
    CHECK (status <> 'failed' OR failure_reason IS NOT NULL),
    CHECK (downloaded_at IS NULL OR status = 'issued'),
    CHECK (superseded_by IS NULL OR superseded_by <> id)
);
CREATE INDEX certificates_subscriber_idx ON certificates (subscriber_id, usage);

CREATE TABLE revocations (
    certificate_id bigint PRIMARY KEY REFERENCES certificates (id),
    reason         text NOT NULL CHECK (reason IN ('unspecified', 'keyCompromise',
                       'affiliationChanged', 'superseded', 'cessationOfOperation',
                       'privilegeWithdrawn')),
    revoked_at     timestamptz NOT NULL DEFAULT now(),
    revoked_by     bigint REFERENCES ra_officers (id)
);

-- Append-only, hash-chained: hash = SHA-256(canonical JSON of the row || prev_hash).
CREATE TABLE audit_events (
    id        bigint PRIMARY KEY CHECK (id > 0),
    at        timestamptz NOT NULL,
    actor     text NOT NULL,
    action    text NOT NULL CHECK (action ~ '^[a-z_]+$'),
    target    text NOT NULL DEFAULT '',
    details   jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(details) = 'object'),
    prev_hash bytea NOT NULL CHECK (length(prev_hash) = 32),
    hash      bytea NOT NULL UNIQUE CHECK (length(hash) = 32),
    UNIQUE (prev_hash)
);

CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END;
$$;

CREATE TRIGGER audit_events_no_update BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
