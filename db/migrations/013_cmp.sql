-- CMP enrolment (RFC 4210/9480 over HTTP, gateway/cmp/).
--
-- cmp_enrolment_secrets: the one-time secret an RA officer hands a subscriber for a
-- MAC-protected CMP enrolment (reference = the account name). The server must know the secret
-- itself to check a password-based MAC (the client picks salt and iteration count), so it is
-- kept, not hashed, but only while it can still be used: the first enrolment it protects uses
-- it up, and the text is wiped when that transaction ends or the secret expires. At most one
-- open secret per account; a new one replaces it.
CREATE TABLE cmp_enrolment_secrets (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  bigint NOT NULL REFERENCES accounts (id),
    secret      text CHECK (secret IS NULL OR length(secret) BETWEEN 16 AND 128),
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    created_by  bigint REFERENCES ra_officers (id),
    CHECK (expires_at > created_at)
);
CREATE UNIQUE INDEX cmp_enrolment_secrets_open_idx ON cmp_enrolment_secrets (account_id)
    WHERE used_at IS NULL;

-- One row per CMP transaction that got past its protection check: transactionIdInUse for a
-- new request that reuses an ID, and the state certConf/pkiConf moves on.
CREATE TABLE cmp_transactions (
    transaction_id  bytea PRIMARY KEY CHECK (length(transaction_id) BETWEEN 1 AND 64),
    account_id      bigint REFERENCES accounts (id),
    secret_id       bigint REFERENCES cmp_enrolment_secrets (id),
    certificate_id  bigint REFERENCES certificates (id),
    cert_req_id     integer,
    state           text NOT NULL CHECK (state IN ('waiting', 'done')),
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX cmp_transactions_created_idx ON cmp_transactions (created_at);

-- (transactionID, senderNonce) pairs of authenticated messages, kept for the replay window.
CREATE TABLE cmp_nonces (
    transaction_id  bytea NOT NULL,
    sender_nonce    bytea NOT NULL,
    seen_at         timestamptz NOT NULL,
    PRIMARY KEY (transaction_id, sender_nonce)
);
CREATE INDEX cmp_nonces_seen_idx ON cmp_nonces (seen_at);

GRANT SELECT, INSERT, UPDATE ON cmp_enrolment_secrets TO ca_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON cmp_transactions TO ca_app;
GRANT SELECT, INSERT, DELETE ON cmp_nonces TO ca_app;
