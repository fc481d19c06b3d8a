-- Fewer index entries per issuance: every application inserts a pending row and then updates
-- it to issued (not a HOT update: ``status`` is in partial-index predicates), so each index on
-- ``certificates`` costs two entries per certificate.
--
-- * UNIQUE (issuer_id, serial) is implied by UNIQUE (serial) (serials are unique service-wide)
--   and no query needs it (lookups by issuer and serial use the serial index).
-- * renewed_from and superseded_by are NULL on all but renewed certificates: as partial unique
--   indexes (NULLs never conflict anyway) they keep the same "renewed at most once" guarantee
--   without an entry for every other row.

ALTER TABLE certificates DROP CONSTRAINT certificates_issuer_id_serial_key;

ALTER TABLE certificates DROP CONSTRAINT certificates_renewed_from_key;
CREATE UNIQUE INDEX certificates_renewed_from_key ON certificates (renewed_from)
    WHERE renewed_from IS NOT NULL;

ALTER TABLE certificates DROP CONSTRAINT certificates_superseded_by_key;
CREATE UNIQUE INDEX certificates_superseded_by_key ON certificates (superseded_by)
    WHERE superseded_by IS NOT NULL;

-- Step 2 of issuance for a batch of applications in ONE round trip and one implicit
-- transaction (no BEGIN / COMMIT round trips): lock the subscribers in id order, then (a new
-- statement, so a new READ COMMITTED snapshot that sees every application committed before
-- the locks were granted) check the one-valid-certificate rule, record the terms acceptances
-- and write the pending rows. Of several applications for one subscriber and usage only the
-- first (lowest ordinal) is written. Returns (id, serial) of the rows written; the caller's
-- statement commits them before it answers.
CREATE FUNCTION certificates_apply_batch(
    p_sid bigint[], p_aid bigint[], p_usage text[], p_excl bigint[], p_serial text[],
    p_issuer_id int[], p_profile text[], p_subject text[], p_pk bytea[], p_nb timestamptz[],
    p_na timestamptz[], p_tv text[], p_now timestamptz[], p_pending_since timestamptz[])
RETURNS TABLE (cert_id bigint, cert_serial text)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM 1 FROM subscribers s WHERE s.id = ANY(p_sid) ORDER BY s.id FOR UPDATE;
    RETURN QUERY
    WITH u AS (
        SELECT * FROM unnest(p_sid, p_aid, p_usage, p_excl, p_serial, p_issuer_id, p_profile,
                             p_subject, p_pk, p_nb, p_na, p_tv, p_now, p_pending_since)
            WITH ORDINALITY AS u(sid, aid, usage, excl, serial, issuer_id, profile,
                                 subject, pk, nb, na, tv, now, pending_since, ord)
    ), ok AS (
        -- LATERAL ... LIMIT 1: one index probe per application
        SELECT DISTINCT ON (u.sid, u.usage) u.* FROM u
        LEFT JOIN LATERAL (
            SELECT c.id FROM certificates c
            LEFT JOIN revocations r ON r.certificate_id = c.id
            WHERE c.subscriber_id = u.sid AND c.usage = u.usage
              AND (u.excl IS NULL OR c.id <> u.excl)
              AND ((c.status = 'issued' AND r.certificate_id IS NULL
                    AND c.superseded_by IS NULL AND c.not_after > u.now)
                   OR (c.status = 'pending' AND c.created_at >= u.pending_since))
            LIMIT 1) b ON true
        WHERE b.id IS NULL
        ORDER BY u.sid, u.usage, u.ord
    ), terms AS (
        INSERT INTO terms_acceptances AS t (account_id, terms_version, accepted_at)
        SELECT ok.aid, ok.tv, min(ok.now) FROM ok GROUP BY ok.aid, ok.tv
        ON CONFLICT (account_id, terms_version) DO NOTHING
    )
    INSERT INTO certificates AS c (serial, issuer_id, subscriber_id, usage, profile, status,
        subject, public_key_sha256, not_before, not_after, terms_version, created_at)
    SELECT ok.serial, ok.issuer_id, ok.sid, ok.usage, ok.profile, 'pending', ok.subject, ok.pk,
           ok.nb, ok.na, ok.tv, ok.now
    FROM ok ORDER BY ok.ord
    RETURNING c.id, c.serial;
END;
$$;

-- The audit chain head under the append lock, in one round trip: the lock first, then (a new
-- statement, so a READ COMMITTED snapshot taken after the lock was granted) the last row.
-- Used by db/audit.py inside the caller's transaction; the lock is held to its end.
CREATE FUNCTION audit_lock_head(p_key bigint, OUT head_id bigint, OUT head_hash bytea)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(p_key);
    SELECT e.id, e.hash INTO head_id, head_hash FROM audit_events e ORDER BY e.id DESC LIMIT 1;
END;
$$;
