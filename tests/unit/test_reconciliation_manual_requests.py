"""The checks of a manual match or unmatch request before it is written (decision 0098): each
refusal names the parameter at fault; an item of another tenant or account is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reconciliation.manual_match import (
    ACTOR_LENGTH_MAX,
    LINE_IDS_MAX,
    RequestProblem,
    manual_match_request,
    manual_unmatch_problem,
)
from reconciliation.matching import ManualMatch

GOOD: dict[str, Any] = {
    "tenant_id": "acme",
    "account_id": "bank",
    "line_ids": ["bank/ref/BK-1", "bank/content/ab12/0"],
    "movement_ids": ["acme:17#0"],
    "actor": "alice",
    "note": "one payment booked as two",
    "requested_at_us": 1_000,
}


def test_a_good_request_is_the_record() -> None:
    request = manual_match_request(**GOOD)
    assert request == ManualMatch(
        tenant_id="acme",
        account_id="bank",
        line_ids=("bank/ref/BK-1", "bank/content/ab12/0"),
        movement_ids=("acme:17#0",),
        actor="alice",
        note="one payment booked as two",
        requested_at_us=1_000,
    )


@pytest.mark.parametrize(
    ("change", "parameter", "reason"),
    [
        ({"account_id": "ba/nk"}, "account", "A-Z a-z"),
        ({"line_ids": []}, "line_ids", "1 to 64 ids (got 0)"),
        ({"line_ids": ["bank/x"] * 2}, "line_ids", "named twice"),
        ({"line_ids": [f"bank/{n}" for n in range(LINE_IDS_MAX + 1)]}, "line_ids", "1 to 64"),
        ({"line_ids": ["cash/ref/1"]}, "line_ids", "[0] 'cash/ref/1' is not a line id of"),
        ({"movement_ids": ["other:1#0"]}, "movement_ids", "not a movement id of tenant 'acme'"),
        ({"movement_ids": ["acme:x#0"]}, "movement_ids", "TENANT:SEQUENCE#POSTING"),
        ({"movement_ids": ["acme:1"]}, "movement_ids", "TENANT:SEQUENCE#POSTING"),
        ({"actor": " "}, "actor", "required"),
        ({"actor": "a" * (ACTOR_LENGTH_MAX + 1)}, "actor", "at most 128 characters"),
        ({"note": "line\nbreak"}, "note", "printable"),
    ],
)
def test_a_bad_request_names_the_parameter(
    change: dict[str, Any], parameter: str, reason: str
) -> None:
    problem = manual_match_request(**{**GOOD, **change})
    assert isinstance(problem, RequestProblem), problem
    assert problem.parameter == parameter
    assert reason in problem.reason, problem.message()
    assert problem.message().startswith(f"{parameter}: ")
    assert "\n" not in problem.message()


@pytest.mark.parametrize(
    ("account", "result_id", "actor", "parameter"),
    [
        ("bank", "0:12", "alice", None),
        ("", "0:12", "alice", "account"),
        ("bank", "12", "alice", "result_id"),
        ("bank", "0:-1", "alice", "result_id"),
        ("bank", "0:12", "", "actor"),
    ],
)
def test_an_unmatch_is_checked_before_reading(
    account: str, result_id: str, actor: str, parameter: str | None
) -> None:
    problem = manual_unmatch_problem(account, result_id, actor, "")
    assert (None if problem is None else problem.parameter) == parameter


def test_statements_match_refuses_a_bad_request_before_writing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No broker is touched: the refusal names the parameter on one line, exit status 1."""
    from streamledger.cli import build_full_parser
    from streamledger.settings import Settings

    arguments = build_full_parser().parse_args(
        ["statements", "match", "--tenant", "acme", "--account", "bank", "--line", "bank/ref/1",
         "--movement", "other:1#0", "--actor", "alice"]
    )  # fmt: skip
    assert arguments.handler(arguments, Settings(home=Path("/nonexistent"))) == 1
    error = capsys.readouterr().err
    assert error.startswith("refused: movement_ids: [0] 'other:1#0'"), error
    assert error.count("\n") == 1


def test_the_openapi_document_has_the_manual_routes() -> None:
    from api.openapi import build_openapi

    document = build_openapi()
    for path, body in (
        ("/v1/reconciliation/matches", "ManualMatchBody"),
        ("/v1/reconciliation/unmatches", "ManualUnmatchBody"),
    ):
        operation = document["paths"][path]["post"]
        assert set(operation["responses"]) >= {"202", "400", "401", "422", "503"}
        assert body in document["components"]["schemas"]
    schema = document["components"]["schemas"]["ManualMatchBody"]
    assert set(schema["required"]) == {"account", "line_ids", "movement_ids", "actor"}


def test_a_match_naming_a_decided_item_is_refused_naming_it_and_the_result() -> None:
    from reconciliation.manual_match import decided_items_problem
    from reconciliation.matching import MatchRule, ReconciliationResult, ReconciliationState

    def result(state: ReconciliationState, lines: tuple[str, ...], movements: tuple[str, ...]) -> (
        ReconciliationResult
    ):  # fmt: skip
        return ReconciliationResult(
            tenant_id="acme", account_id="bank", state=state, rule=MatchRule.AMOUNT_AND_DATE,
            reason=state.value, line_ids=lines, movement_ids=movements, line_amount=1,
            movement_amount=1, decided_at_us=1,
        )  # fmt: skip

    request = manual_match_request(**GOOD)
    assert isinstance(request, ManualMatch)
    matched = result(ReconciliationState.MATCHED, ("bank/ref/BK-1",), ("acme:3#0",))
    unmatched = result(ReconciliationState.UNMATCHED, (), ("acme:17#0",))
    other = result(ReconciliationState.MATCHED, ("bank/ref/x",), ("acme:4#0",))
    assert decided_items_problem([("0:1", other)], request) is None
    first = decided_items_problem([("0:1", matched), ("0:2", other)], request)
    assert first == RequestProblem(
        "line_ids", "'bank/ref/BK-1' is already matched by result 0:1 (undo it first: unmatch)"
    )
    # an item whose latest result is unmatched may be matched by hand (decision 0106)
    assert decided_items_problem([("0:5", unmatched)], request) is None
    latest = decided_items_problem([("0:1", matched), ("0:5", unmatched)], request)
    assert latest == first
    rematched = result(ReconciliationState.MATCHED, (), ("acme:17#0",))
    undone = result(ReconciliationState.UNMATCHED, (), ("acme:17#0",))
    assert decided_items_problem([("0:1", undone), ("0:2", rematched)], request) == (
        RequestProblem(
            "movement_ids", "'acme:17#0' is already matched by result 0:2 (undo it first: unmatch)"
        )
    )
    assert decided_items_problem([("0:1", rematched), ("0:2", undone)], request) is None
    group = result(ReconciliationState.UNMATCHED, (), ("acme:17#0", "acme:18#0"))
    assert decided_items_problem([("0:3", group)], request) == RequestProblem(
        "movement_ids",
        "'acme:17#0' is unmatched together with 'acme:18#0' by result 0:3: name them all",
    )
