"""Versioned schema migrations, applied under an advisory lock.

Each migration is a list of statements run in one transaction; the schema's
``migrations`` table records which versions are applied. Many workers starting
at once serialize on ``pg_advisory_lock`` keyed by the schema name, so each
migration runs exactly once. ``{s}`` stands for the quoted schema name.
"""

from __future__ import annotations

from typing import Any

#: Called once per inserted message by the publish statements: the new
#: row's id, and its lease when it is handed to an idle claim. A message
#: ready now (``ready <= at``, client time) whose queue has a live
#: registration (not lapsed, capacity left, its listener's backend still
#: connected) is leased to that consumer as a claim would lease it (fresh
#: receipt token, delivery count 1) and NOTIFYed to the consumer's channel
#: with its body and live revocation; NOTIFY is sent at commit, so a
#: rolled-back insert hands nothing. Bodies over 5,000 bytes (a NOTIFY
#: payload must stay under 8,000) are not handed. The liveness check reads
#: ``pg_stat_get_activity(pid)``, one backend, where the ``pg_stat_activity``
#: view builds a row for every backend (0.4 ms against 0.01 ms here).
HAND_OFF = """CREATE FUNCTION {s}.hand_off(
    q text, tid text, body bytea, ready double precision, at double precision,
    OUT id bigint, OUT locked_until double precision, OUT receipt text,
    OUT delivery_count integer
) LANGUAGE plpgsql AS $$
DECLARE
    who text; lease double precision; chan text;
    r_term boolean; r_reason text; r_exp double precision; r_ver bigint;
BEGIN
    id := nextval(pg_get_serial_sequence('{s}.jobs', 'id'));
    locked_until := 0;
    receipt := NULL;
    delivery_count := 0;
    IF ready > at OR octet_length(body) > 5000 OR length(q) > 200
       OR length(tid) > 200 THEN
        RETURN;
    END IF;
    SELECT i.consumer, i.lease, i.channel INTO who, lease, chan
    FROM {s}.idle i
    WHERE i.queue = q AND i.upto >= at AND i.capacity > 0
      AND EXISTS (SELECT 1 FROM pg_stat_get_activity(i.pid))
    LIMIT 1 FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    UPDATE {s}.idle SET capacity = capacity - 1
    WHERE idle.queue = q AND idle.consumer = who;
    locked_until := at + lease;
    receipt := md5(random()::text || clock_timestamp()::text || id::text);
    delivery_count := 1;
    SELECT v.terminate, v.reason, v.expires_at, v.version
    INTO r_term, r_reason, r_exp, r_ver
    FROM {s}.revocations v
    WHERE v.task_id = tid AND (v.expires_at IS NULL OR v.expires_at > at);
    PERFORM pg_notify(chan, json_build_object(
        'q', q, 'i', id, 't', receipt, 'u', locked_until, 'k', tid,
        'b', encode(body, 'base64'),
        'v', CASE WHEN r_ver IS NULL THEN NULL
                  ELSE json_build_array(r_term, r_reason, r_exp, r_ver) END
    )::text);
END $$"""

MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (
        1,
        "initial schema",
        (
            """CREATE TABLE {s}.jobs (
                id bigserial PRIMARY KEY,
                queue text NOT NULL,
                task_id text NOT NULL,
                priority smallint NOT NULL DEFAULT 0,
                ready_at double precision NOT NULL,
                locked_until double precision NOT NULL DEFAULT 0,
                receipt text,
                delivery_count integer NOT NULL DEFAULT 0,
                body bytea NOT NULL
            ) WITH (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.02,
                    autovacuum_vacuum_cost_delay = 0)""",
            "CREATE INDEX jobs_claim ON {s}.jobs (queue, priority DESC, ready_at, id)",
            "CREATE INDEX jobs_due ON {s}.jobs (queue, ready_at)",
            "CREATE TABLE {s}.queues (name text PRIMARY KEY)",
            """CREATE TABLE {s}.dead (
                seq bigserial PRIMARY KEY,
                queue text NOT NULL,
                task_id text NOT NULL,
                name text NOT NULL,
                reason text NOT NULL,
                error text,
                attempts integer NOT NULL,
                dead_at double precision NOT NULL,
                envelope text,
                raw bytea,
                history text NOT NULL DEFAULT '[]'
            )""",
            "CREATE INDEX dead_order ON {s}.dead (queue, dead_at, seq)",
            "CREATE INDEX dead_task ON {s}.dead (queue, task_id)",
            """CREATE TABLE {s}.results (
                task_id text PRIMARY KEY,
                terminal boolean NOT NULL,
                body bytea NOT NULL,
                expires_at double precision
            )""",
            "CREATE INDEX results_expiry ON {s}.results (expires_at)",
            """CREATE TABLE {s}.groups (
                group_id text PRIMARY KEY,
                n integer NOT NULL,
                expires_at double precision
            )""",
            """CREATE TABLE {s}.group_members (
                group_id text NOT NULL,
                idx integer NOT NULL,
                body bytea NOT NULL,
                expires_at double precision,
                PRIMARY KEY (group_id, idx)
            )""",
            """CREATE TABLE {s}.once (
                key text PRIMARY KEY,
                owner text NOT NULL,
                expires_at double precision
            )""",
            """CREATE TABLE {s}.uniq (
                key text PRIMARY KEY,
                task_id text NOT NULL,
                expires_at double precision
            )""",
            """CREATE TABLE {s}.locks (
                name text PRIMARY KEY,
                owner text NOT NULL,
                expires_at double precision NOT NULL
            )""",
            "CREATE SEQUENCE {s}.revocation_version",
            """CREATE TABLE {s}.revocations (
                task_id text PRIMARY KEY,
                terminate boolean NOT NULL,
                reason text NOT NULL,
                expires_at double precision,
                version bigint NOT NULL
            )""",
            "CREATE INDEX revocations_version ON {s}.revocations (version)",
            """CREATE TABLE {s}.workers (
                worker_id text PRIMARY KEY,
                info text NOT NULL,
                expires_at double precision NOT NULL
            )""",
            """CREATE TABLE {s}.buckets (
                key text PRIMARY KEY,
                tokens double precision NOT NULL,
                ts double precision NOT NULL,
                taken boolean NOT NULL
            )""",
        ),
    ),
    (
        2,
        "beat schedule entries",
        (
            """CREATE TABLE {s}.schedules (
                name text PRIMARY KEY,
                definition text NOT NULL,
                enabled boolean NOT NULL,
                version bigint NOT NULL,
                created_at double precision NOT NULL,
                changed_at double precision NOT NULL,
                last_fire double precision,
                last_fired_at double precision,
                fire_count bigint NOT NULL DEFAULT 0,
                fired_by text
            )""",
            """CREATE TABLE {s}.schedule_revision (
                id integer PRIMARY KEY CHECK (id = 1),
                value bigint NOT NULL
            )""",
            "INSERT INTO {s}.schedule_revision (id, value) VALUES (1, 0)",
        ),
    ),
    (
        3,
        "workflow runs, steps, event watchers and mailboxes",
        (
            """CREATE TABLE {s}.wf_runs (
                run_id text PRIMARY KEY,
                workflow text NOT NULL,
                status text NOT NULL,
                parent_id text,
                created_at double precision NOT NULL,
                due_at double precision,
                body text NOT NULL
            )""",
            "CREATE INDEX wf_runs_due ON {s}.wf_runs (due_at) WHERE due_at IS NOT NULL",
            "CREATE INDEX wf_runs_created ON {s}.wf_runs (created_at, run_id)",
            """CREATE TABLE {s}.wf_steps (
                run_id text NOT NULL,
                idx integer NOT NULL,
                body text NOT NULL,
                PRIMARY KEY (run_id, idx)
            )""",
            """CREATE TABLE {s}.wf_watchers (
                run_id text NOT NULL,
                idx integer NOT NULL,
                topic text NOT NULL,
                PRIMARY KEY (run_id, idx)
            )""",
            "CREATE INDEX wf_watchers_topic ON {s}.wf_watchers (topic)",
            """CREATE TABLE {s}.wf_mailbox (
                seq bigserial PRIMARY KEY,
                run_id text NOT NULL,
                topic text NOT NULL,
                payload text NOT NULL
            )""",
            "CREATE INDEX wf_mailbox_run ON {s}.wf_mailbox (run_id, topic, seq)",
            """CREATE TABLE {s}.wf_cursor (
                id integer PRIMARY KEY CHECK (id = 1),
                value bigint NOT NULL
            )""",
            "INSERT INTO {s}.wf_cursor (id, value) VALUES (1, 0)",
        ),
    ),
    (
        4,
        "workflow run versions and fencing tokens; group expiry by the client's clock",
        (
            # Engines claim only the versions they can replay. Existing runs
            # take the version in their JSON body; a body that does not parse
            # keeps version 1 instead of failing the migration.
            "ALTER TABLE {s}.wf_runs ADD COLUMN version integer NOT NULL DEFAULT 1",
            # The fencing token of the latest claim, for save_step's one
            # statement (runs stored before have token 0, as their record).
            "ALTER TABLE {s}.wf_runs ADD COLUMN fence bigint NOT NULL DEFAULT 0",
            """DO $$
            DECLARE r record;
            BEGIN
                BEGIN
                    UPDATE {s}.wf_runs
                    SET version = COALESCE((body::jsonb ->> 'version')::integer, 1);
                EXCEPTION WHEN others THEN
                    FOR r IN SELECT run_id, body FROM {s}.wf_runs LOOP
                        BEGIN
                            UPDATE {s}.wf_runs SET version = COALESCE(
                                (r.body::jsonb ->> 'version')::integer, 1)
                            WHERE run_id = r.run_id;
                        EXCEPTION WHEN others THEN NULL;
                        END;
                    END LOOP;
                END;
            END $$""",
            # stem/_groupstate.py: a group is remembered until its forget
            # time, so late members of an expired group are refused. Existing
            # groups keep their expiry and forget at the same time.
            "ALTER TABLE {s}.groups ADD COLUMN forget_at double precision",
            "UPDATE {s}.groups SET forget_at = expires_at",
        ),
    ),
    (
        5,
        "the event log and its listeners",
        (
            """CREATE TABLE {s}.events (
                id bigserial PRIMARY KEY,
                body bytea NOT NULL
            )""",
            """CREATE TABLE {s}.event_listeners (
                name text PRIMARY KEY,
                expires_at double precision NOT NULL
            )""",
        ),
    ),
    (
        6,
        "results listed for operators (when, state, name, queue)",
        (
            "ALTER TABLE {s}.results ADD COLUMN updated_at double precision",
            "ALTER TABLE {s}.results ADD COLUMN state text",
            "ALTER TABLE {s}.results ADD COLUMN name text",
            "ALTER TABLE {s}.results ADD COLUMN queue text",
            # Records written before are filled from their JSON body; a body
            # that does not parse stays unlisted (and readable by id).
            """DO $$
            DECLARE r record; j jsonb;
            BEGIN
                FOR r IN SELECT task_id, body FROM {s}.results LOOP
                    BEGIN
                        j := convert_from(r.body, 'UTF8')::jsonb;
                        UPDATE {s}.results SET
                            updated_at = (j ->> 'updated_at')::double precision,
                            state = j ->> 'state', name = j ->> 'name',
                            queue = j ->> 'queue'
                        WHERE task_id = r.task_id;
                    EXCEPTION WHEN others THEN NULL;
                    END;
                END LOOP;
            END $$""",
            "CREATE INDEX results_recent ON {s}.results (updated_at, task_id)",
            "CREATE INDEX results_state ON {s}.results (state, updated_at, task_id)",
        ),
    ),
    (
        7,
        "no state index on results (a state filter scans, bounded)",
        ("DROP INDEX IF EXISTS {s}.results_state",),
    ),
    (
        8,
        "idle claims and the handoff of new messages to them",
        (
            # Registrations of waiting claims (_broker.PostgresBroker.claim):
            # ephemeral, so unlogged (a crash empties it; claims register
            # again within seconds).
            """CREATE UNLOGGED TABLE {s}.idle (
                queue text NOT NULL,
                consumer text NOT NULL,
                capacity integer NOT NULL,
                lease double precision NOT NULL,
                upto double precision NOT NULL,
                channel text NOT NULL,
                pid integer NOT NULL,
                PRIMARY KEY (queue, consumer)
            )""",
            HAND_OFF,
        ),
    ),
)

LATEST = MIGRATIONS[-1][0]
#: the migration that adds ``idle`` and ``hand_off``
HANDOFF_VERSION = 8


async def current_version(conn: Any, schema: str) -> int:
    """The applied version (0 for a schema that does not exist yet)."""
    exists = await conn.fetchval(
        "SELECT to_regclass($1) IS NOT NULL", f'"{schema}".migrations'
    )
    if not exists:
        return 0
    quoted = f'"{schema}"'
    version = await conn.fetchval(f"SELECT max(version) FROM {quoted}.migrations")
    return int(version or 0)


async def apply_migrations(conn: Any, schema: str) -> list[int]:
    """Bring ``schema`` up to :data:`LATEST`; returns the versions applied.

    Runs on the asyncio side with a dedicated connection. Safe to call from
    many processes at once: they serialize on an advisory lock.
    """
    if await current_version(conn, schema) >= LATEST:
        return []
    quoted = f'"{schema}"'
    key = f"stem.migrate.{schema}"
    await conn.execute("SELECT pg_advisory_lock(hashtext($1))", key)
    applied: list[int] = []
    try:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quoted}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {quoted}.migrations ("
            "version integer PRIMARY KEY, description text NOT NULL, "
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = await current_version(conn, schema)
        for version, description, statements in MIGRATIONS:
            if version <= done:
                continue
            async with conn.transaction():
                for statement in statements:
                    await conn.execute(statement.format(s=quoted))
                await conn.execute(
                    f"INSERT INTO {quoted}.migrations (version, description) "
                    "VALUES ($1, $2)",
                    version,
                    description,
                )
            applied.append(version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", key)
    return applied
