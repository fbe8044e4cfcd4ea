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

Scenarios of beat, names and sync threads (issue 15 items 5-7) belong here
too, in modules of their own (``test_beat_*.py``, ``test_names.py``,
``test_threads.py``); ``tests/hostile/_poison.py`` holds the shared poison
bodies and the worker-process harness they can reuse.
"""
