"""Hostile input: whatever a buggy producer or anyone with write access to
the backend puts in it, no single message stops a worker (issue 15).

- ``test_decoders_fuzz.py``: hypothesis fuzzing of every decoder (message
  bodies, stream fields, rows, dead letters, broadcasts and control
  requests, workflow and schedule rows, canvas meta): any input decodes to
  a valid value or raises ``stem.DecodeError``, nothing else.
- ``test_batch_isolation.py``: the BrokerActor's per-message isolation and
  the finish hooks (one message's failure never drops, stalls or re-runs
  the others).
- ``test_redis_channels.py``: Redis pub/sub isolated by database and
  namespace.
- ``test_poison_worker.py``: scripted poison per backend (SQLite, Redis,
  Postgres) written straight into the backend around good tasks (Redis:
  odd stream fields, streams without the consumer group, sorted-set
  members no script wrote), against a real ``stem worker`` process.

- ``test_beat_schedules.py``: crons that never fire, intervals under the
  minimum, names with control characters; beat isolates an entry that fails
  or no longer decodes; `stem schedule` never prints a traceback.
- ``test_names.py``: names matched whole, ids refused, log lines and CLI
  output with control characters escaped.
- ``test_threads.py``: hung sync tasks free their slots and are reported; an
  async task blocking past its hard limit fails.

``tests/hostile/_poison.py`` holds the shared poison bodies and the
worker-process harness.
"""
