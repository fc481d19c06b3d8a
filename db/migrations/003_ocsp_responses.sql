-- Pre-signed OCSP responses: one stored response per certificate, refreshed in batches by the
-- pre-signing job (gateway/services/ocsp_presign.py). The responder serves a stored response
-- only while it is fresh AND states what the certificate row states now (good, or revoked at
-- the recorded time), so a revocation never waits for the job: a mismatch is signed afresh.

CREATE TABLE ocsp_responses (
    certificate_id bigint PRIMARY KEY REFERENCES certificates (id) ON DELETE CASCADE,
    issuer_id      integer NOT NULL REFERENCES issuers (id),
    status         text NOT NULL CHECK (status IN ('good', 'revoked')),
    revoked_at     timestamptz,
    der            bytea NOT NULL,
    this_update    timestamptz NOT NULL,
    next_update    timestamptz NOT NULL CHECK (next_update > this_update),
    produced_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'revoked') = (revoked_at IS NOT NULL))
);
-- the job's "what needs refreshing" scan and the stats of the operator page
CREATE INDEX ocsp_responses_next_update_idx ON ocsp_responses (issuer_id, next_update);
