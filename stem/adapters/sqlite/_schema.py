"""The schema, as an ordered list of migrations tracked by ``PRAGMA user_version``.

Each migration runs inside the ``BEGIN IMMEDIATE`` transaction that read the
version, so two processes opening a fresh file at once apply it exactly once:
the second waits on the write lock, then sees the new version.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: tuple[str, ...] = (
    # 1: the broker, results and the small stores.
    """
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,  -- enqueue order
        queue TEXT NOT NULL,
        task_id TEXT NOT NULL,
        priority INTEGER NOT NULL,
        -- ready/delayed: when it becomes visible, leased: the lease deadline
        visible_at REAL NOT NULL,
        token TEXT,                             -- lease token, NULL when not leased
        delivery_count INTEGER NOT NULL DEFAULT 0,
        consumer TEXT,
        body BLOB NOT NULL
    );
    CREATE INDEX messages_claim ON messages (queue, priority, visible_at);
    CREATE TABLE queues (name TEXT PRIMARY KEY) WITHOUT ROWID;
    CREATE TABLE dead_letters (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        queue TEXT NOT NULL,
        task_id TEXT NOT NULL,
        name TEXT NOT NULL,
        reason TEXT NOT NULL,
        error TEXT,
        attempts INTEGER NOT NULL,
        dead_at REAL NOT NULL,
        envelope TEXT,
        raw BLOB,
        history TEXT NOT NULL
    );
    CREATE UNIQUE INDEX dead_letters_task ON dead_letters (queue, task_id);
    CREATE INDEX dead_letters_order ON dead_letters (queue, dead_at, seq);
    CREATE TABLE broadcasts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created_at REAL NOT NULL,
        body TEXT NOT NULL
    );
    CREATE TABLE results (
        task_id TEXT PRIMARY KEY,
        terminal INTEGER NOT NULL,
        expires_at REAL,
        body BLOB NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE group_members (
        group_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        expires_at REAL,
        body BLOB NOT NULL,
        PRIMARY KEY (group_id, idx)
    ) WITHOUT ROWID;
    CREATE TABLE claims (
        key TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        expires_at REAL
    ) WITHOUT ROWID;
    CREATE TABLE uniques (
        key TEXT PRIMARY KEY,
        task_id TEXT NOT NULL,
        expires_at REAL
    ) WITHOUT ROWID;
    CREATE TABLE locks (
        name TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        expires_at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE revocations (
        task_id TEXT PRIMARY KEY,
        terminate INTEGER NOT NULL,
        reason TEXT NOT NULL,
        expires_at REAL,
        version INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX revocations_version ON revocations (version);
    CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)
        WITHOUT ROWID;
    CREATE TABLE workers (
        worker_id TEXT PRIMARY KEY,
        expires_at REAL NOT NULL,
        body TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE buckets (
        key TEXT PRIMARY KEY,
        tokens REAL NOT NULL,
        updated_at REAL NOT NULL
    ) WITHOUT ROWID;
    """,
    # 2: beat's schedule entries (stem/adapters/sqlite/_schedules.py).
    """
    CREATE TABLE schedules (
        name TEXT PRIMARY KEY,
        definition TEXT NOT NULL,
        enabled INTEGER NOT NULL,
        version INTEGER NOT NULL,
        created_at REAL NOT NULL,
        changed_at REAL NOT NULL,
        last_fire REAL,
        last_fired_at REAL,
        fire_count INTEGER NOT NULL DEFAULT 0,
        fired_by TEXT
    ) WITHOUT ROWID;
    INSERT OR IGNORE INTO counters (name, value) VALUES ('schedules', 0);
    """,
    # 3: workflow runs, steps, event watchers and mailboxes
    # (stem/adapters/sqlite/_workflows.py).
    """
    CREATE TABLE wf_runs (
        run_id TEXT PRIMARY KEY,
        workflow TEXT NOT NULL,
        status TEXT NOT NULL,
        parent_id TEXT,
        created_at REAL NOT NULL,
        due_at REAL,
        body TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX wf_runs_due ON wf_runs (due_at) WHERE due_at IS NOT NULL;
    CREATE INDEX wf_runs_created ON wf_runs (created_at, run_id);
    CREATE TABLE wf_steps (
        run_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (run_id, idx)
    ) WITHOUT ROWID;
    CREATE TABLE wf_watchers (
        run_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        topic TEXT NOT NULL,
        PRIMARY KEY (run_id, idx)
    ) WITHOUT ROWID;
    CREATE INDEX wf_watchers_topic ON wf_watchers (topic);
    CREATE TABLE wf_mailbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL,
        topic TEXT NOT NULL,
        payload TEXT NOT NULL
    );
    CREATE INDEX wf_mailbox_run ON wf_mailbox (run_id, topic, seq);
    INSERT OR IGNORE INTO counters (name, value) VALUES ('workflows', 0);
    """,
    # 4: dead letters keep every entry, keyed by their own seq (the entry id):
    # the task id is no longer unique (an empty or forged id must not make
    # one entry replace another). Existing rows keep their seq.
    """
    DROP INDEX dead_letters_task;
    CREATE INDEX dead_letters_task ON dead_letters (queue, task_id);
    """,
    # 5: version and fence columns on workflow runs (engines claim only the
    # versions they can replay; a step write checks the claim's fencing token
    # in one statement), and group records judged by the client's clock
    # (stem/_groupstate.py). Rows written before stay readable: a run's
    # version is copied from its JSON body, its token is 0 as in its body,
    # and an existing group keeps its expiry (its forget time is the same,
    # so no expired group is kept).
    """
    ALTER TABLE wf_runs ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE wf_runs ADD COLUMN fence INTEGER NOT NULL DEFAULT 0;
    UPDATE wf_runs SET version = CAST(json_extract(body, '$.version') AS INTEGER)
        WHERE json_valid(body) AND json_type(body, '$.version') = 'integer';
    CREATE TABLE groups (
        group_id TEXT PRIMARY KEY,
        n INTEGER NOT NULL,
        expires_at REAL,
        forget_at REAL
    ) WITHOUT ROWID;
    INSERT INTO groups (group_id, n, expires_at, forget_at)
        SELECT group_id, COUNT(*), MAX(expires_at), MAX(expires_at)
        FROM group_members GROUP BY group_id;
    """,
    # 6: the event log (lifecycle events relayed across processes, pruned to
    # its capacity on every append) and who listens to it.
    """
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        body BLOB NOT NULL
    );
    CREATE TABLE event_listeners (
        name TEXT PRIMARY KEY,
        expires_at REAL NOT NULL
    ) WITHOUT ROWID;
    """,
    # 7: results listed for operators (the dashboard, stem.contracts.TaskQuery):
    # when, state, name and queue as columns, newest first by an index.
    # Records written before are filled from their JSON body (a body that is
    # not JSON stays unlisted, and readable by id).
    """
    ALTER TABLE results ADD COLUMN updated_at REAL;
    ALTER TABLE results ADD COLUMN state TEXT;
    ALTER TABLE results ADD COLUMN name TEXT;
    ALTER TABLE results ADD COLUMN queue TEXT;
    UPDATE results SET
        updated_at = json_extract(CAST(body AS TEXT), '$.updated_at'),
        state = json_extract(CAST(body AS TEXT), '$.state'),
        name = json_extract(CAST(body AS TEXT), '$.name'),
        queue = json_extract(CAST(body AS TEXT), '$.queue')
        WHERE json_valid(CAST(body AS TEXT));
    CREATE INDEX results_recent ON results (updated_at, task_id);
    CREATE INDEX results_state ON results (state, updated_at, task_id);
    """,
    # 8: no state index: it cost a third of the result writes' throughput
    # (benchmarks/results_index.py); a state filter scans like the others.
    """
    DROP INDEX IF EXISTS results_state;
    """,
    # 9: the newest-first index also covers the dashboard's chart (terminal
    # records per minute): the count reads the index alone.
    """
    DROP INDEX IF EXISTS results_recent;
    CREATE INDEX results_recent ON results
        (updated_at, task_id, terminal, state, expires_at);
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to date inside the caller's write transaction;
    returns the version found. Refuses a file written by a newer Stem."""
    (found,) = conn.execute("PRAGMA user_version").fetchone()
    if found > SCHEMA_VERSION:
        raise RuntimeError(
            f"the database has schema version {found}, newer than this Stem "
            f"understands ({SCHEMA_VERSION}); upgrade trio-stem"
        )
    for version in range(found, SCHEMA_VERSION):
        for statement in MIGRATIONS[version].split(";"):
            if statement.strip():
                conn.execute(statement)
    if found != SCHEMA_VERSION:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return int(found)
