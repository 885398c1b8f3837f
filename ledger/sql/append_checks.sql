-- Appends that can neither lock the log against readers nor corrupt it.
--
-- A template, not a script: ledger.postgres.append_check_statements fills in the names in
-- braces (schema, tables, the fact types' suffixes, the instant masks), leaves out the
-- comment lines, and runs each statement (each ends at an `-- end` line) with the rest of
-- the schema, as the owner of the tables. Every statement is idempotent. See
-- docs/reliability.md (section "Roles") for what each part refuses, docs/decisions.md for why.

-- Per writing transaction: the positions it appended, and how far their key index rows go.
-- Written only by the owner's trigger functions below; no role has any privilege on it.
CREATE UNLOGGED TABLE IF NOT EXISTS {s}.{t} (
  xid xid8 PRIMARY KEY, first bigint NOT NULL, last bigint NOT NULL, indexed bigint NOT NULL)
-- end

REVOKE ALL ON {s}.{t} FROM PUBLIC
-- end

-- The append lock, taken as the owner: a writer needs EXECUTE on this, not UPDATE on the
-- log (UPDATE would also allow LOCK ... IN ACCESS EXCLUSIVE MODE, which blocks readers).
-- Locks belong to the transaction: the caller holds it until it commits or rolls back.
-- The sequence is reset for a writer that draws positions from it.
CREATE OR REPLACE FUNCTION {s}.ledger_append_lock() RETURNS bigint
LANGUAGE plpgsql {definer} AS $fn$
DECLARE following bigint;
BEGIN
  LOCK TABLE {s}.{e} IN EXCLUSIVE MODE;
  SELECT coalesce(max(notification_id), 0) + 1 INTO following FROM {s}.{e};
  PERFORM setval(pg_get_serial_sequence({qualified}, 'notification_id'), following, false);
  RETURN following;
END $fn$
-- end

-- Fresh planner statistics after a bulk load; only a table's owner may analyze it.
CREATE OR REPLACE FUNCTION {s}.ledger_analyze() RETURNS void
LANGUAGE plpgsql {definer} AS $fn$
BEGIN
  ANALYZE {s}.{e}, {s}.{i};
END $fn$
-- end

-- Whether the statement's role may switch these checks off anyway: the tables' owner, a
-- member of its role, a superuser. Its rows are not checked (as row security does not apply
-- to a table's owner): that would protect nothing and cost every import. The role is the
-- session's (SET ROLE included), not this function's owner. `SET ledger.check_all = on`
-- checks every role's rows (the test suite does, so every write of the ledger meets them).
CREATE OR REPLACE FUNCTION {s}.ledger_unchecked() RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
  SELECT coalesce(current_setting('ledger.check_all', true), '') <> 'on'
     AND pg_has_role(CASE WHEN current_setting('role') = 'none' THEN session_user
                          ELSE current_setting('role')::name END,
                     (SELECT relowner FROM pg_class WHERE oid = {qualified}::regclass), 'MEMBER')
$fn$
-- end

-- One row's problem (NULL when it is as the ledger writes it) and its recorded_at. A call
-- per row is slow: used only to name the first refused row once the set-based checks in
-- ledger_check_events found one, and for the recorded_at of the row before an insert.
CREATE OR REPLACE FUNCTION {s}.ledger_row_problem(
  version bigint, topic text, id text, state bytea, OUT problem text, OUT recorded_at timestamptz)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE h bytea; k int; j int; a text; tail bytea; suffix bytea; size int;
BEGIN
  IF version IS DISTINCT FROM 1 THEN problem := 'originator_version must be 1'; RETURN; END IF;
  IF topic IS NULL OR NOT topic = ANY (ARRAY[{topics}]) THEN
    problem := format('topic %L is not a fact type', topic); RETURN;
  END IF;
  h := textsend('[' || to_json(id)::text || ',');
  k := octet_length(h);
  size := coalesce(octet_length(state), 0);
  IF size < k OR substr(state, 1, k) <> h THEN
    problem := 'state is not [id, recorded_at, fact, link] with this row''s id'; RETURN;
  END IF;
  j := position('\x222c7b'::bytea IN substr(state, k + 1, 40));
  BEGIN
    a := convert_from(substr(state, k + 2, greatest(j - 2, 0)), 'UTF8');
    IF j = 0 OR NOT translate(a, '123456789', '000000000') = ANY (ARRAY[{masks}]) THEN
      RAISE EXCEPTION USING ERRCODE = 'data_exception';
    END IF;
    recorded_at := a::timestamptz;
  EXCEPTION WHEN OTHERS THEN
    problem := 'recorded_at is not a timestamp with an offset as the ledger writes it'; RETURN;
  END;
  -- The end: `,"`, the link, `"]`.
  tail := substr(state, size - 65, 64);
  BEGIN
    IF size < k + j + 68 OR substr(state, size - 1) <> '\x225d'::bytea
       OR substr(state, size - 67, 2) <> '\x2c22'::bytea
       OR encode(decode(convert_from(tail, 'SQL_ASCII'), 'hex'), 'hex')
          <> convert_from(tail, 'SQL_ASCII') THEN
      RAISE EXCEPTION USING ERRCODE = 'data_exception';
    END IF;
  EXCEPTION WHEN OTHERS THEN
    problem := 'link is not 64 lowercase hex digits'; RETURN;
  END;
  -- The bytes before the link: the last key, the end of the fact, and the link's comma and quote.
  suffix := textsend('"type":"' || topic || '"') || '\x7d2c22'::bytea;
  IF size < k + j + octet_length(suffix) + 68
     OR substr(state, size - 65 - octet_length(suffix), octet_length(suffix)) <> suffix THEN
    problem := format('fact is not an object of type %L (canonical JSON, `type` last)', topic); RETURN;
  END IF;
END $fn$
-- end

-- After each INSERT or COPY into the log, one pass over its rows (the transition table):
-- positions from the log's last one on without a gap; version 1; a known topic; a state
-- [id, recorded_at, fact, link] with this row's id, recorded_at in msgspec's form and
-- never earlier than the row before, a fact that ends with `"type":"<topic>"}` (canonical
-- JSON sorts the keys, and `type` sorts last in every fact type), a link of 64 lowercase
-- hex digits. The fact's fields and the link's value are not checked: `ledger verify` is.
CREATE OR REPLACE FUNCTION {s}.ledger_check_events() RETURNS trigger
LANGUAGE plpgsql {definer} AS $fn$
DECLARE
  n bigint; lo bigint; hi bigint; prior bigint; prior_at timestamptz; nbad bigint; same boolean;
  links text; at0 bytea; first_at timestamptz; bad bigint; r record; last_at timestamptz; why text;
  passed boolean := true;
BEGIN
  IF {s}.ledger_unchecked() THEN RETURN NULL; END IF;
  SELECT count(*), min(notification_id), max(notification_id) INTO n, lo, hi FROM new_rows;
  IF n = 0 THEN RETURN NULL; END IF;
  -- Positions: from the last one on, no gap (the unique index makes them distinct).
  SELECT max(notification_id) INTO prior FROM {s}.{e} WHERE notification_id < lo;
  IF coalesce(prior, 0) <> lo - 1 OR hi - lo + 1 <> n
     OR (SELECT max(notification_id) FROM {s}.{e}) <> hi THEN
    RAISE EXCEPTION 'ledger: positions % to % refused: the log ends at position % and takes no gap',
      lo, hi, coalesce(prior, 0) USING ERRCODE = 'check_violation';
  END IF;
  IF prior IS NOT NULL THEN
    SELECT (x.ledger_row_problem).recorded_at INTO prior_at FROM (
      SELECT {s}.ledger_row_problem(originator_version, topic, originator_id, state)
      FROM {s}.{e} WHERE notification_id = prior) x;
  END IF;
  <<checks>> BEGIN
    -- The common case in one pass: every row well formed, all with one recorded_at (an
    -- import's instant). Comparisons of bytes, and the links checked as one hex string.
    -- at0: the first row's `"<recorded_at>",{`, which every row should have after its id.
    SELECT substr(state, octet_length(h) + 1,
                  position('\x222c7b'::bytea IN substr(state, octet_length(h) + 1, 40)) + 2)
      INTO at0
      FROM (SELECT state, textsend('[' || to_json(originator_id)::text || ',') AS h FROM new_rows LIMIT 1) f;
    SELECT count(*) FILTER (WHERE ok IS NOT TRUE), bool_and(substr(st, k + 1, octet_length(at0)) = at0),
           convert_from(string_agg(link, ''::bytea), 'SQL_ASCII')
      INTO nbad, same, links
      FROM (SELECT v = 1 AND substr(st, 1, k) = h AND sz >= k + x.len + 92
                   AND substr(st, sz - 67 - x.len, x.len + 2) = x.suffix
                   AND substr(st, sz - 1) = '\x225d'::bytea AS ok,
                   substr(st, sz - 65, 64) AS link, st, k
            FROM (SELECT originator_version AS v, topic AS tp, state AS st, octet_length(state) AS sz, h,
                         octet_length(h) AS k
                  FROM (SELECT originator_version, topic, state,
                               textsend('[' || to_json(originator_id)::text || ',') AS h
                        FROM new_rows OFFSET 0) r0 OFFSET 0) r1
            LEFT JOIN (VALUES {suffixes}) x(tp, suffix, len) USING (tp)) q;
    IF nbad = 0 AND encode(decode(links, 'hex'), 'hex') = links THEN
      IF same AND octet_length(at0) >= 23
         AND translate(convert_from(substr(at0, 2, octet_length(at0) - 4), 'UTF8'),
                       '123456789', '000000000') = ANY (ARRAY[{masks}]) THEN
        first_at := convert_from(substr(at0, 2, octet_length(at0) - 4), 'UTF8')::timestamptz;
        IF prior_at IS NULL OR first_at >= prior_at THEN
          EXIT checks;
        END IF;
      ELSIF NOT same THEN
        -- recorded_at differs from row to row (facts that carry their own): each is read,
        -- checked and compared with the row before, still in one query.
        SELECT min(p) INTO bad FROM (
          SELECT p, at < coalesce(lag(at) OVER (ORDER BY p), prior_at) OR at IS NULL AS wrong
          FROM (SELECT p, CASE WHEN j > 0 AND sz >= k + j + len + 70
                                AND translate(a, '123456789', '000000000') = ANY (ARRAY[{masks}])
                               THEN a::timestamptz END AS at
                FROM (SELECT p, j, k, sz, len,
                             convert_from(substr(st, k + 2, greatest(j - 2, 0)), 'UTF8') AS a
                      FROM (SELECT p, st, k, sz, len,
                                   position('\x222c7b'::bytea IN substr(st, k + 1, 40)) AS j
                            FROM (SELECT notification_id AS p, state AS st, octet_length(state) AS sz,
                                         octet_length(textsend('[' || to_json(originator_id)::text
                                                               || ',')) AS k,
                                         x.len
                                  FROM new_rows JOIN (VALUES {suffixes}) x(tp, suffix, len) ON x.tp = topic
                                  OFFSET 0) a0 OFFSET 0) a1) a2) a3) a4
          WHERE wrong;
        IF bad IS NULL THEN
          EXIT checks;
        END IF;
      END IF;
    END IF;
    passed := false;
  EXCEPTION WHEN data_exception THEN
    passed := false;  -- a value that would not convert: named below
  END;
  IF passed THEN
    INSERT INTO {s}.{t} VALUES (pg_current_xact_id(), lo, hi, lo - 1)
      ON CONFLICT (xid) DO UPDATE SET last = excluded.last;
    RETURN NULL;
  END IF;
  -- Something is wrong: name the first row, one row at a time.
  last_at := prior_at;
  FOR r IN SELECT notification_id AS p, (x).problem, (x).recorded_at FROM (
      SELECT notification_id, {s}.ledger_row_problem(originator_version, topic, originator_id, state) AS x
      FROM new_rows) y ORDER BY notification_id LOOP
    why := r.problem;
    IF why IS NULL AND r.recorded_at < last_at THEN
      why := format('recorded_at %s is earlier than the row before (%s)', r.recorded_at, last_at);
    END IF;
    IF why IS NOT NULL THEN
      RAISE EXCEPTION 'ledger: position % refused: %; the ledger writes no such row', r.p, why
        USING ERRCODE = 'check_violation';
    END IF;
    last_at := r.recorded_at;
  END LOOP;
  RAISE EXCEPTION 'ledger: rows at positions % to % refused: not as the ledger writes them', lo, hi
    USING ERRCODE = 'check_violation';
END $fn$
-- end

-- After each INSERT or COPY into the key index: its rows name the positions this
-- transaction appended, in order, each at least once (a support fact has two keys), with a
-- key of a known kind.
CREATE OR REPLACE FUNCTION {s}.ledger_check_index() RETURNS trigger
LANGUAGE plpgsql {definer} AS $fn$
DECLARE n bigint; d bigint; lo bigint; hi bigint; nbad bigint; tl record;
BEGIN
  IF {s}.ledger_unchecked() THEN RETURN NULL; END IF;
  SELECT count(*), count(DISTINCT position), min(position), max(position),
         count(*) FILTER (WHERE NOT left(key, 2) = ANY (ARRAY[{kinds}]) OR key IS NULL)
    INTO n, d, lo, hi, nbad FROM new_keys;
  IF n = 0 THEN RETURN NULL; END IF;
  SELECT * INTO tl FROM {s}.{t} WHERE xid = pg_current_xact_id();
  IF tl.xid IS NULL OR hi - lo + 1 <> d OR lo <> tl.indexed + 1 OR hi > tl.last THEN
    RAISE EXCEPTION 'ledger: key index rows for positions % to % refused: they must name, in order and '
      'each at least once, the positions this transaction appended (%)', lo, hi,
      CASE WHEN tl.xid IS NULL THEN 'none'
           ELSE format('%s to %s, indexed up to %s', tl.first, tl.last, tl.indexed) END
      USING ERRCODE = 'check_violation';
  END IF;
  IF nbad > 0 THEN
    RAISE EXCEPTION 'ledger: key index rows refused: a key must begin with one of %', ARRAY[{kinds}]
      USING ERRCODE = 'check_violation';
  END IF;
  UPDATE {s}.{t} SET indexed = hi WHERE xid = tl.xid;
  RETURN NULL;
END $fn$
-- end

-- At commit (deferred): every position the transaction appended has its key index row.
CREATE OR REPLACE FUNCTION {s}.ledger_check_commit() RETURNS trigger
LANGUAGE plpgsql {definer} AS $fn$
DECLARE tl record;
BEGIN
  DELETE FROM {s}.{t} WHERE xid = NEW.xid RETURNING * INTO tl;
  IF tl.indexed <> tl.last THEN
    RAISE EXCEPTION 'ledger: positions % to % have no key index rows: every appended row needs one',
      tl.indexed + 1, tl.last USING ERRCODE = 'check_violation';
  END IF;
  RETURN NULL;
END $fn$
-- end

-- Only the owner, and the roles ledger/sql/roles.sql grants them to, may call these.
REVOKE ALL ON FUNCTION {s}.ledger_append_lock(), {s}.ledger_analyze(), {s}.ledger_unchecked(),
  {s}.ledger_row_problem(bigint, text, text, bytea), {s}.ledger_check_events(),
  {s}.ledger_check_index(), {s}.ledger_check_commit() FROM PUBLIC
-- end

CREATE OR REPLACE TRIGGER ledger_append_check AFTER INSERT ON {s}.{e}
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {s}.ledger_check_events()
-- end

CREATE OR REPLACE TRIGGER ledger_append_check AFTER INSERT ON {s}.{i}
  REFERENCING NEW TABLE AS new_keys FOR EACH STATEMENT EXECUTE FUNCTION {s}.ledger_check_index()
-- end

-- A constraint trigger has no OR REPLACE. Created last: its existence says the schema is
-- complete (ledger.postgres.LAST_OBJECT).
DO $do$ BEGIN
IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'ledger_append_complete'
               AND tgrelid = (SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                              WHERE n.nspname = {sn} AND c.relname = {tn})) THEN
  CREATE CONSTRAINT TRIGGER ledger_append_complete AFTER INSERT ON {s}.{t}
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {s}.ledger_check_commit();
END IF;
END $do$
-- end
