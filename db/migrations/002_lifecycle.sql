-- Certificate lifecycle: issuer roles, CRL state per issuer, renewal challenges, renewal
-- notices, lookups for OCSP and the one-valid-certificate rule.

ALTER TABLE issuers ADD COLUMN role text NOT NULL DEFAULT 'issuing'
    CHECK (role IN ('root', 'issuing'));

-- One row per issuer: the CRL number last allocated and the latest signed CRL, so that every
-- gateway instance serves the same bytes. ``dirty`` is set by a revocation and cleared when a
-- regeneration has read the revocations; a failed signing sets it again.
CREATE TABLE crl_state (
    issuer_id     integer PRIMARY KEY REFERENCES issuers (id),
    crl_number    bigint NOT NULL DEFAULT 0 CHECK (crl_number >= 0),
    dirty         boolean NOT NULL DEFAULT true,
    der           bytea,
    der_number    bigint,
    this_update   timestamptz,
    next_update   timestamptz,
    CHECK ((der IS NULL) = (der_number IS NULL)),
    CHECK (der_number IS NULL OR der_number <= crl_number)
);

-- Single-use renewal challenges; only the SHA-256 of the challenge is kept.
CREATE TABLE renewal_challenges (
    challenge_hash bytea PRIMARY KEY CHECK (length(challenge_hash) = 32),
    certificate_id bigint NOT NULL REFERENCES certificates (id),
    created_at     timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL CHECK (expires_at > created_at),
    used_at        timestamptz
);
CREATE INDEX renewal_challenges_expiry_idx ON renewal_challenges (expires_at);

-- Renewal notices: a row claims the certificate (claimed_at), sent_at records the e-mail.
CREATE TABLE renewal_notices (
    certificate_id bigint PRIMARY KEY REFERENCES certificates (id),
    recipient      text NOT NULL,
    claimed_at     timestamptz NOT NULL,
    sent_at        timestamptz,
    attempts       integer NOT NULL DEFAULT 1 CHECK (attempts >= 1),
    last_error     text
);

CREATE INDEX certificates_not_after_idx ON certificates (not_after) WHERE status = 'issued';
CREATE INDEX certificates_pending_idx ON certificates (created_at) WHERE status = 'pending';
