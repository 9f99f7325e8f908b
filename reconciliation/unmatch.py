"""``streamledger statements unmatch``: undo a decided match, as an audited request (decision 0090).

The command reads the tenant's partition of ``ledger.reconciliation``, checks the named result
(``"{partition}:{offset}"``, the API's ``result_id``) is a ``matched`` or ``mismatched`` result of
the account that no later result superseded, and writes a ``ManualUnmatch`` record repeating its
items and amounts to ``ledger.statements``. The matcher answers with an ``unmatched`` result
(rule ``manual``, reason ``manual_unmatch``) naming the same items: it supersedes the match (the
latest result naming an item is its state). Nothing is edited; both are records.

``statements match`` reads the same partition: ``prepared_match`` refuses at once a manual match
naming an item a result already decided (decision 0098).
"""

from __future__ import annotations

from collections.abc import Sequence

from kafka_adapter.security import RECONCILER_PRINCIPAL, client_config
from reconciliation.manual_match import (
    RequestProblem,
    decided_items_problem,
    manual_unmatch_problem,
)
from reconciliation.matching import (
    ManualMatch,
    ManualUnmatch,
    ReconciliationResult,
    ReconciliationState,
)
from reconciliation.partition_reader import read_partition
from reconciliation.records import decode
from reconciliation.topics import RECONCILIATION_TOPIC, ensure_topics
from schemas.keys import command_key, partition_for
from streamledger.settings import Settings

READ_TIMEOUT_S = 60.0
UNDOABLE_STATES = (ReconciliationState.MATCHED, ReconciliationState.MISMATCHED)


def unmatch_request(
    results: Sequence[tuple[int, ReconciliationResult]],
    *,
    tenant_id: str,
    account_id: str,
    result_id: str,
    actor: str,
    note: str,
    requested_at_us: int,
) -> ManualUnmatch | str:
    """The request undoing the result at ``result_id`` among the tenant's partition's ``(offset,
    result)``, or why not (a value). Pure."""
    _, _, offset_text = result_id.partition(":")
    chosen = [
        (index, result)
        for index, (offset, result) in enumerate(results)
        if str(offset) == offset_text and result.tenant_id == tenant_id
    ]
    if not chosen or chosen[0][1].account_id != account_id:
        return f"no result {result_id} of account {account_id!r}"
    index, result = chosen[0]
    if result.state not in UNDOABLE_STATES:
        return f"result {result_id} is {result.state.value}: only a match or mismatch is undone"
    items = set(result.line_ids) | set(result.movement_ids)
    for _, later in results[index + 1 :]:
        if later.tenant_id == tenant_id and items & (set(later.line_ids) | set(later.movement_ids)):
            return f"result {result_id} was superseded by a later result ({later.reason})"
    return ManualUnmatch(
        tenant_id=tenant_id,
        account_id=account_id,
        result_id=result_id,
        line_ids=result.line_ids,
        movement_ids=result.movement_ids,
        line_amount=result.line_amount,
        movement_amount=result.movement_amount,
        actor=actor,
        note=note,
        requested_at_us=requested_at_us,
    )


def tenant_results(
    settings: Settings, tenant_id: str, result_id: str
) -> list[tuple[int, ReconciliationResult]] | str:
    """Every result on the tenant's partition of ``ledger.reconciliation`` with its offset, or
    why ``result_id`` cannot be on it."""
    partitions = ensure_topics(settings)
    partition = partition_for(command_key(tenant_id), partitions)
    partition_text, separator, offset_text = result_id.partition(":")
    if not separator or not partition_text.isdigit() or not offset_text.isdigit():
        return f"result id {result_id!r} is not PARTITION:OFFSET"
    if int(partition_text) != partition:
        return f"result {result_id} is not on tenant {tenant_id!r}'s partition ({partition})"
    return partition_results(settings, partition)


def partition_results(settings: Settings, partition: int) -> list[tuple[int, ReconciliationResult]]:
    """Every result on one partition of ``ledger.reconciliation`` with its offset."""
    records = read_partition(
        client_config(settings, RECONCILER_PRINCIPAL),
        settings.topic(RECONCILIATION_TOPIC),
        partition,
        timeout_s=READ_TIMEOUT_S,
    )
    found: list[tuple[int, ReconciliationResult]] = []
    for record in records:
        value = None if record.value is None else decode(record.value)
        if isinstance(value, ReconciliationResult):
            found.append((record.offset, value))
    return found


def prepared_unmatch(
    settings: Settings,
    *,
    tenant_id: str,
    account_id: str,
    result_id: str,
    actor: str,
    note: str,
    requested_at_us: int,
) -> ManualUnmatch | RequestProblem:
    """The ``ManualUnmatch`` to write for ``result_id``, or why not, naming the parameter: the
    request's own limits first (no read), then the result as the tenant's partition has it."""
    problem = manual_unmatch_problem(account_id, result_id, actor, note)
    if problem is not None:
        return problem
    results = tenant_results(settings, tenant_id, result_id)
    if isinstance(results, str):
        return RequestProblem("result_id", results)
    request = unmatch_request(
        results,
        tenant_id=tenant_id,
        account_id=account_id,
        result_id=result_id,
        actor=actor,
        note=note,
        requested_at_us=requested_at_us,
    )
    return RequestProblem("result_id", request) if isinstance(request, str) else request


def prepared_match(settings: Settings, request: ManualMatch) -> ManualMatch | RequestProblem:
    """``request`` unless a result on the tenant's partition already decided one of its items
    (the matcher would refuse it): then the item and the result, naming the parameter."""
    partition = partition_for(command_key(request.tenant_id), ensure_topics(settings))
    results = [
        (f"{partition}:{offset}", result)
        for offset, result in partition_results(settings, partition)
    ]
    problem = decided_items_problem(results, request)
    return request if problem is None else problem
