"""What users and backend authors test with: the adapter contract suite.

Every backend passes the same suite of plain ``check_*`` coroutines (in the
manner of ``trio.testing.check_one_way_stream``), each taking a
:class:`Harness` around a fresh, empty backend under a ``MockClock``.
:func:`all_checks` lists them by name; :func:`run_check` runs one in a Trio run
of its own; :func:`open_harness` opens a harness inside a run you already have.
A check needing a capability the backend lacks skips, printing why.

With pytest, ``pytest_plugins = ["stem.testing.pytest_plugin"]`` adds the
``stem_contract_check`` fixture that runs a test once per check; see
docs/backends/writing-a-backend.md. pytest is optional: nothing here but that
plugin needs it.
"""

# First: under pytest, it registers the checks for assert rewriting.
from . import _rewrite  # noqa: F401
from ._checks_broker import check_backend_shape as check_backend_shape
from ._checks_broker import check_broadcast_fan_out as check_broadcast_fan_out
from ._checks_broker import check_claim_limit as check_claim_limit
from ._checks_broker import check_claim_wait_times_out as check_claim_wait_times_out
from ._checks_broker import (
    check_claim_wait_woken_by_lease_expiry as check_claim_wait_woken_by_lease_expiry,
)
from ._checks_broker import (
    check_claim_wait_woken_by_nack as check_claim_wait_woken_by_nack,
)
from ._checks_broker import (
    check_claim_wait_woken_by_publish as check_claim_wait_woken_by_publish,
)
from ._checks_broker import (
    check_claim_wait_woken_on_any_named_queue as check_claim_wait_woken_on_any_named_queue,
)
from ._checks_broker import (
    check_claim_wait_woken_when_delayed_due as check_claim_wait_woken_when_delayed_due,
)
from ._checks_broker import (
    check_concurrent_consumers_exclusive as check_concurrent_consumers_exclusive,
)
from ._checks_broker import (
    check_create_and_publish_queues_an_id_once as check_create_and_publish_queues_an_id_once,
)
from ._checks_broker import (
    check_create_and_publish_single_winner as check_create_and_publish_single_winner,
)
from ._checks_broker import (
    check_dead_letter_again_after_replay as check_dead_letter_again_after_replay,
)
from ._checks_broker import check_dead_letter_list_get as check_dead_letter_list_get
from ._checks_broker import (
    check_delayed_invisible_until_due as check_delayed_invisible_until_due,
)
from ._checks_broker import (
    check_due_delayed_ordered_by_priority as check_due_delayed_ordered_by_priority,
)
from ._checks_broker import (
    check_envelope_fields_roundtrip as check_envelope_fields_roundtrip,
)
from ._checks_broker import (
    check_extend_delays_redelivery as check_extend_delays_redelivery,
)
from ._checks_broker import check_nack_requeue as check_nack_requeue
from ._checks_broker import (
    check_nack_requeue_delay_and_envelope as check_nack_requeue_delay_and_envelope,
)
from ._checks_broker import (
    check_nack_without_requeue_drops as check_nack_without_requeue_drops,
)
from ._checks_broker import (
    check_priority_fifo_across_publishes as check_priority_fifo_across_publishes,
)
from ._checks_broker import check_priority_ordering as check_priority_ordering
from ._checks_broker import check_publish_claim_ack as check_publish_claim_ack
from ._checks_broker import (
    check_publish_raw_garbage_decode_error as check_publish_raw_garbage_decode_error,
)
from ._checks_broker import check_publish_raw_valid_body as check_publish_raw_valid_body
from ._checks_broker import check_purge_dead as check_purge_dead
from ._checks_broker import (
    check_purge_queue_leaves_in_flight as check_purge_queue_leaves_in_flight,
)
from ._checks_broker import check_queue_routing as check_queue_routing
from ._checks_broker import (
    check_receipts_unique_across_queues as check_receipts_unique_across_queues,
)
from ._checks_broker import (
    check_remove_deletes_waiting_messages_only as check_remove_deletes_waiting_messages_only,
)
from ._checks_broker import check_replay_dead_delay as check_replay_dead_delay
from ._checks_broker import (
    check_replay_dead_dry_run_changes_nothing as check_replay_dead_dry_run_changes_nothing,
)
from ._checks_broker import check_replay_dead_filters as check_replay_dead_filters
from ._checks_broker import (
    check_replay_dead_fresh_attempt as check_replay_dead_fresh_attempt,
)
from ._checks_broker import (
    check_replay_dead_skips_undecodable as check_replay_dead_skips_undecodable,
)
from ._checks_broker import (
    check_stale_receipt_changes_nothing as check_stale_receipt_changes_nothing,
)
from ._checks_broker import check_stats_counts as check_stats_counts
from ._checks_broker import (
    check_unacked_comes_back_after_lease as check_unacked_comes_back_after_lease,
)
from ._checks_broker import (
    check_waiting_consumers_share_one_message as check_waiting_consumers_share_one_message,
)
from ._checks_events import check_events_append_read as check_events_append_read
from ._checks_events import check_events_bounded as check_events_bounded
from ._checks_events import check_events_foreign_bodies as check_events_foreign_bodies
from ._checks_events import check_events_listeners as check_events_listeners
from ._checks_events import check_events_read_waits as check_events_read_waits
from ._checks_hostile import (
    check_claim_hands_out_poison as check_claim_hands_out_poison,
)
from ._checks_hostile import (
    check_dead_letter_forged_id_keeps_the_real_entry as check_dead_letter_forged_id_keeps_the_real_entry,
)
from ._checks_hostile import (
    check_dead_letters_keep_every_entry as check_dead_letters_keep_every_entry,
)
from ._checks_hostile import (
    check_replay_dead_one_message_per_task_id as check_replay_dead_one_message_per_task_id,
)
from ._checks_schedules import (
    check_schedules_add_get_list_remove as check_schedules_add_get_list_remove,
)
from ._checks_schedules import (
    check_schedules_concurrent_fire_single_winner as check_schedules_concurrent_fire_single_winner,
)
from ._checks_schedules import (
    check_schedules_record_fire_cas as check_schedules_record_fire_cas,
)
from ._checks_schedules import (
    check_schedules_revision_and_wake as check_schedules_revision_and_wake,
)
from ._checks_schedules import (
    check_schedules_update_keeps_fire_record as check_schedules_update_keeps_fire_record,
)
from ._checks_schedules import (
    check_schedules_update_version_conflict as check_schedules_update_version_conflict,
)
from ._checks_signing import (
    check_signed_envelope_survives_retry_and_replay as check_signed_envelope_survives_retry_and_replay,
)
from ._checks_stores import (
    check_claim_once_single_winner as check_claim_once_single_winner,
)
from ._checks_stores import check_claim_once_ttl as check_claim_once_ttl
from ._checks_stores import (
    check_claim_reports_revocations as check_claim_reports_revocations,
)
from ._checks_stores import check_group_add_concurrent as check_group_add_concurrent
from ._checks_stores import (
    check_group_add_counts_distinct as check_group_add_counts_distinct,
)
from ._checks_stores import (
    check_group_expiry_refuses_late_members as check_group_expiry_refuses_late_members,
)
from ._checks_stores import check_heartbeats_ttl as check_heartbeats_ttl
from ._checks_stores import check_lock_expiry as check_lock_expiry
from ._checks_stores import check_lock_owner_checks as check_lock_owner_checks
from ._checks_stores import check_rate_limit_even_refill as check_rate_limit_even_refill
from ._checks_stores import check_reserve_release_unique as check_reserve_release_unique
from ._checks_stores import (
    check_result_create_only_when_absent as check_result_create_only_when_absent,
)
from ._checks_stores import (
    check_result_create_single_winner as check_result_create_single_winner,
)
from ._checks_stores import check_result_forget as check_result_forget
from ._checks_stores import (
    check_result_overwrite_clears_error as check_result_overwrite_clears_error,
)
from ._checks_stores import check_result_progress as check_result_progress
from ._checks_stores import check_result_set_get as check_result_set_get
from ._checks_stores import (
    check_result_terminal_is_final as check_result_terminal_is_final,
)
from ._checks_stores import check_result_ttl_expiry as check_result_ttl_expiry
from ._checks_stores import check_result_wait_existing as check_result_wait_existing
from ._checks_stores import check_result_wait_timeout as check_result_wait_timeout
from ._checks_stores import (
    check_result_wait_woken_by_write as check_result_wait_woken_by_write,
)
from ._checks_stores import check_revocation_expiry as check_revocation_expiry
from ._checks_stores import check_revocation_versions as check_revocation_versions
from ._checks_tasks import check_tasks_bad_arguments as check_tasks_bad_arguments
from ._checks_tasks import (
    check_tasks_expired_not_listed as check_tasks_expired_not_listed,
)
from ._checks_tasks import check_tasks_filtered as check_tasks_filtered
from ._checks_tasks import check_tasks_finished_counts as check_tasks_finished_counts
from ._checks_tasks import (
    check_tasks_listed_newest_first_in_pages as check_tasks_listed_newest_first_in_pages,
)
from ._checks_workflows import (
    check_workflow_claim_respects_max_versions as check_workflow_claim_respects_max_versions,
)
from ._checks_workflows import (
    check_workflow_claim_with_lease as check_workflow_claim_with_lease,
)
from ._checks_workflows import (
    check_workflow_concurrent_claims_are_exclusive as check_workflow_concurrent_claims_are_exclusive,
)
from ._checks_workflows import (
    check_workflow_create_get_list as check_workflow_create_get_list,
)
from ._checks_workflows import (
    check_workflow_emit_resolves_watchers_once as check_workflow_emit_resolves_watchers_once,
)
from ._checks_workflows import (
    check_workflow_fencing_blocked_loop as check_workflow_fencing_blocked_loop,
)
from ._checks_workflows import (
    check_workflow_fencing_same_owner_reclaim as check_workflow_fencing_same_owner_reclaim,
)
from ._checks_workflows import (
    check_workflow_final_run_is_immutable as check_workflow_final_run_is_immutable,
)
from ._checks_workflows import (
    check_workflow_finish_and_cancel as check_workflow_finish_and_cancel,
)
from ._checks_workflows import (
    check_workflow_release_makes_due_at_once as check_workflow_release_makes_due_at_once,
)
from ._checks_workflows import (
    check_workflow_save_step_refreshes_updated_at as check_workflow_save_step_refreshes_updated_at,
)
from ._checks_workflows import (
    check_workflow_send_waits_in_the_mailbox as check_workflow_send_waits_in_the_mailbox,
)
from ._checks_workflows import (
    check_workflow_steps_in_order as check_workflow_steps_in_order,
)
from ._checks_workflows import (
    check_workflow_suspend_until_and_next_due as check_workflow_suspend_until_and_next_due,
)
from ._checks_workflows import (
    check_workflow_wait_due_cursor as check_workflow_wait_due_cursor,
)
from ._checks_workflows import (
    check_workflow_wake_during_lease_is_kept as check_workflow_wake_during_lease_is_kept,
)
from ._harness import BackendFactory as BackendFactory
from ._harness import Check as Check
from ._harness import Harness as Harness
from ._harness import Pending as Pending
from ._harness import open_harness as open_harness
from ._skip import CheckSkipped as CheckSkipped
from ._suite import all_checks as all_checks
from ._suite import run_check as run_check
