-- Step 4 of issuance for a batch in ONE round trip and one implicit transaction, instead of
-- BEGIN, UPDATE, audit lock + head, INSERT, COMMIT: the pending rows become issued, then (new
-- statements, so READ COMMITTED snapshots taken after the lock was granted) the append lock is
-- taken, the chain head read and one audit event per certificate written, then the stored
-- rows are returned. The lock is held until this statement's transaction commits, as with
-- db/audit.py. Each event's hash is completed here from the canonical JSON parts the caller
-- computed around the id (db/audit.py: canonical_parts): SHA-256(head || id || tail ||
-- prev_hash), the same value db/audit.py's row_hash gives and audit.verify checks. A row that
-- was no longer pending (swept as abandoned) is neither returned nor audited.
CREATE FUNCTION certificates_issue_batch(
    p_id bigint[], p_der bytea[], p_subject text[], p_nb timestamptz[], p_na timestamptz[],
    p_now timestamptz, p_lock bigint, p_at timestamptz[], p_actor text[], p_action text[],
    p_target text[], p_details jsonb[], p_head bytea[], p_tail bytea[])
RETURNS TABLE (id bigint, serial text, usage text, status text, subject text,
    issuer_subject text, der bytea, not_before timestamptz, not_after timestamptz,
    downloaded_at timestamptz, superseded_by bigint, revoked_at timestamptz,
    revocation_reason text, subscriber_id bigint, issuer_id integer, issuer_name text,
    public_key_sha256 bytea, renewed_from bigint)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_done bigint[];
    v_next bigint;
    v_prev bytea;
    v_hash bytea;
    v_ids bigint[] := '{}';
    v_prevs bytea[] := '{}';
    v_hashes bytea[] := '{}';
    v_k integer[] := '{}';
    k integer;
BEGIN
    WITH upd AS (
        UPDATE certificates c SET status = 'issued', der = u.der, subject = u.subject,
               not_before = u.nb, not_after = u.na, issued_at = p_now
        FROM unnest(p_id, p_der, p_subject, p_nb, p_na) AS u(id, der, subject, nb, na)
        WHERE c.id = ANY(p_id) AND c.id = u.id AND c.status = 'pending'
        RETURNING c.id)
    SELECT coalesce(array_agg(upd.id), '{}') INTO v_done FROM upd;
    IF cardinality(v_done) = 0 THEN
        RETURN;
    END IF;

    PERFORM pg_advisory_xact_lock(p_lock);
    SELECT e.id, e.hash INTO v_next, v_prev FROM audit_events e ORDER BY e.id DESC LIMIT 1;
    v_next := coalesce(v_next, 0);
    v_prev := coalesce(v_prev, decode(repeat('00', 32), 'hex'));
    FOR k IN 1 .. cardinality(p_id) LOOP
        CONTINUE WHEN NOT (p_id[k] = ANY(v_done));
        v_next := v_next + 1;
        v_hash := sha256(p_head[k] || convert_to(v_next::text, 'UTF8') || p_tail[k] || v_prev);
        v_k := v_k || k;
        v_ids := v_ids || v_next;
        v_prevs := v_prevs || v_prev;
        v_hashes := v_hashes || v_hash;
        v_prev := v_hash;
    END LOOP;
    INSERT INTO audit_events (id, at, actor, action, target, details, prev_hash, hash)
    SELECT e.id, p_at[e.k], p_actor[e.k], p_action[e.k], p_target[e.k], p_details[e.k],
           e.prev_hash, e.hash
    FROM unnest(v_ids, v_k, v_prevs, v_hashes) AS e(id, k, prev_hash, hash);

    RETURN QUERY
    SELECT c.id, c.serial, c.usage, c.status, c.subject, i.subject, c.der, c.not_before,
           c.not_after, c.downloaded_at, c.superseded_by, NULL::timestamptz, NULL::text,
           c.subscriber_id, c.issuer_id, i.name, c.public_key_sha256, c.renewed_from
    FROM certificates c JOIN issuers i ON i.id = c.issuer_id
    WHERE c.id = ANY(v_done);
END;
$$;
