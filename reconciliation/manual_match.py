"""The checks of a manual match or unmatch request before it is written (decision 0098). Pure.

``statements match``/``unmatch`` and ``POST /v1/reconciliation/matches``/``unmatches`` build
their ``ManualMatch`` request through ``manual_match_request``: a request that breaks a limit or
names an item of another tenant or account is refused here, as a value naming the parameter,
before anything reaches ``ledger.statements``. An item a result on ``ledger.reconciliation``
currently matched or mismatched must be unmatched first: ``decided_items_problem`` refuses such
a match at once, naming the item and the result; an item whose latest result is ``unmatched``
may be matched by hand (decision 0106). Whether the other items are open, or still remembered as
unmatched, only the matcher knows: it refuses the rest with a ``ManualRefusal`` record.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from reconciliation.matching import ManualMatch, ReconciliationResult, ReconciliationState
from schemas.limits import entity_id_problem

LINE_IDS_MAX: Final = 64  # a person matches a handful; the sum rule's groups are smaller
MOVEMENT_IDS_MAX: Final = 64
ITEM_ID_LENGTH_MAX: Final = 512  # an account id, "/ref/" and the bank's reference (35 in camt)
ACTOR_LENGTH_MAX: Final = 128
NOTE_LENGTH_MAX: Final = 1024
MOVEMENT_ID_PATTERN: Final = re.compile(r"(?P<tenant>[^:#]+):[0-9]{1,19}#[0-9]{1,4}")
RESULT_ID_PATTERN: Final = re.compile(r"[0-9]{1,9}:[0-9]{1,19}")


@dataclass(frozen=True, slots=True)
class RequestProblem:
    """Why a manual request is refused before it is written: the parameter and a reason."""

    parameter: str
    reason: str

    def message(self) -> str:
        return f"{self.parameter}: {self.reason}"


def text_problem(value: str, length_max: int, *, required: bool) -> str | None:
    if required and not value.strip():
        return "required (not blank)"
    if len(value) > length_max:
        return f"at most {length_max} characters (got {len(value)})"
    if not value.isprintable():
        return "printable characters only"
    return None


def item_ids_problem(
    values: Sequence[str], count_max: int, belongs: str, prefix: str
) -> str | None:
    """Why a list of item ids is refused, or None: 1..count_max distinct ids, each of the
    tenant's account (a line id starts with the account, a movement id with the tenant)."""
    if not 1 <= len(values) <= count_max:
        return f"1 to {count_max} ids (got {len(values)})"
    if len(set(values)) != len(values):
        return "an id is named twice"
    for index, value in enumerate(values):
        if not value.startswith(prefix) or len(value) > ITEM_ID_LENGTH_MAX:
            return f"[{index}] {value[:64]!r} is not {belongs}"
    return None


def movement_ids_problem(values: Sequence[str], tenant_id: str) -> str | None:
    found = item_ids_problem(
        values, MOVEMENT_IDS_MAX, f"a movement id of tenant {tenant_id!r}", f"{tenant_id}:"
    )
    if found is not None:
        return found
    for index, value in enumerate(values):
        if MOVEMENT_ID_PATTERN.fullmatch(value) is None:
            return f"[{index}] {value[:64]!r} is not TENANT:SEQUENCE#POSTING"
    return None


def actor_problems(actor: str, note: str) -> RequestProblem | None:
    if (problem := text_problem(actor, ACTOR_LENGTH_MAX, required=True)) is not None:
        return RequestProblem("actor", problem)
    if (problem := text_problem(note, NOTE_LENGTH_MAX, required=False)) is not None:
        return RequestProblem("note", problem)
    return None


def manual_match_request(
    *,
    tenant_id: str,
    account_id: str,
    line_ids: Sequence[str],
    movement_ids: Sequence[str],
    actor: str,
    note: str,
    requested_at_us: int,
) -> ManualMatch | RequestProblem:
    """The ``ManualMatch`` record to write, or the first parameter at fault."""
    if (problem := entity_id_problem(account_id)) is not None:
        return RequestProblem("account", problem)
    line_problem = item_ids_problem(
        line_ids, LINE_IDS_MAX, f"a line id of account {account_id!r}", f"{account_id}/"
    )
    if line_problem is not None:
        return RequestProblem("line_ids", line_problem)
    if (problem := movement_ids_problem(movement_ids, tenant_id)) is not None:
        return RequestProblem("movement_ids", problem)
    if (found := actor_problems(actor, note)) is not None:
        return found
    return ManualMatch(
        tenant_id=tenant_id,
        account_id=account_id,
        line_ids=tuple(line_ids),
        movement_ids=tuple(movement_ids),
        actor=actor,
        note=note,
        requested_at_us=requested_at_us,
    )


def manual_unmatch_problem(
    account_id: str, result_id: str, actor: str, note: str
) -> RequestProblem | None:
    """Why an unmatch request is refused before the results are read, or None."""
    if (problem := entity_id_problem(account_id)) is not None:
        return RequestProblem("account", problem)
    if RESULT_ID_PATTERN.fullmatch(result_id) is None:
        return RequestProblem("result_id", f"{result_id[:64]!r} is not PARTITION:OFFSET")
    return actor_problems(actor, note)


def decided_items_problem(
    results: Sequence[tuple[str, ReconciliationResult]], request: ManualMatch
) -> RequestProblem | None:
    """Why ``request`` names an item whose latest result (``(result_id, result)`` of the tenant's
    partition, in order) is a match or a mismatch — undo it first — or only some of the items of
    one side of an ``unmatched`` result (a group a person unmatched: name them all); or None.
    Items whose latest result is ``unmatched`` may be matched by hand: the matcher supersedes
    that result (decision 0106)."""
    lines, movements = set(request.line_ids), set(request.movement_ids)
    named = lines | movements
    seen: set[str] = set()  # items whose latest result was met (the walk goes newest first)
    for result_id, result in reversed(results):
        if result.tenant_id != request.tenant_id or result.account_id != request.account_id:
            continue
        for parameter, wanted, decided in (
            ("line_ids", lines, result.line_ids),
            ("movement_ids", movements, result.movement_ids),
        ):
            found = sorted(wanted.intersection(decided).difference(seen))
            seen.update(found)
            if not found:
                continue
            if result.state is not ReconciliationState.UNMATCHED:
                return RequestProblem(
                    parameter,
                    f"{found[0][:64]!r} is already {result.state.value} by result {result_id}"
                    " (undo it first: unmatch)",
                )
            left_out = [item for item in decided if item not in named]
            if left_out:
                return RequestProblem(
                    parameter,
                    f"{found[0][:64]!r} is unmatched together with {left_out[0][:64]!r} by"
                    f" result {result_id}: name them all",
                )
    return None
