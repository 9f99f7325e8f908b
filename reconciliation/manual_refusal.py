"""A manual request the matcher refused, as a record on ``ledger.reconciliation`` (decision 0107).

``statements match``/``unmatch`` and ``POST /v1/reconciliation/matches``/``unmatches`` check a
request before writing it (decision 0098), but only the matcher knows, when it reads the request,
whether every item is still open or currently unmatched: an item decided meanwhile, an id naming
nothing, a group unmatched before. It answers such a request with a ``ManualRefusal`` in the same
transaction that moves past the request, on the tenant's partition of ``ledger.reconciliation``:
the request's position on ``ledger.statements`` (the 202's ``request_id``), its kind, who asked,
the items it named and the matcher's reason. It decides nothing: no item changes state, and the
consumers that fold states (the report's "latest result per item", the unmatch check) pass over
it. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

MANUAL_MATCH_REQUEST: Final = "ManualMatch"
MANUAL_UNMATCH_REQUEST: Final = "ManualUnmatch"
REQUEST_TYPES: Final = (MANUAL_MATCH_REQUEST, MANUAL_UNMATCH_REQUEST)


@dataclass(frozen=True, slots=True, kw_only=True)
class ManualRefusal:
    """One ``ledger.reconciliation`` record (schema ``ManualRefusal``): a request not decided."""

    tenant_id: str
    account_id: str
    request_id: str  # "{partition}:{offset}" of the request on ledger.statements
    request_type: str  # ManualMatch or ManualUnmatch (the request record's name)
    actor: str
    line_ids: tuple[str, ...]
    movement_ids: tuple[str, ...]
    reason: str  # the matcher's, in words
    refused_at_us: int

    def __post_init__(self) -> None:
        assert self.request_type in REQUEST_TYPES, self.request_type


def manual_refusal(
    request_type: str,
    fields: tuple[str, str, str, tuple[str, ...], tuple[str, ...]],
    *,
    request_id: str,
    reason: str,
    refused_at_us: int,
) -> ManualRefusal:
    """The refusal of the request at ``request_id``; ``fields`` are its tenant, account, actor,
    line ids and movement ids."""
    tenant_id, account_id, actor, line_ids, movement_ids = fields
    return ManualRefusal(
        tenant_id=tenant_id,
        account_id=account_id,
        request_id=request_id,
        request_type=request_type,
        actor=actor,
        line_ids=line_ids,
        movement_ids=movement_ids,
        reason=reason,
        refused_at_us=refused_at_us,
    )
