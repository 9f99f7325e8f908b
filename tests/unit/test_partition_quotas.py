"""The per-tenant rate limit in the processor's adapter (decision 0083): a rate-limited command
gets one not_stored reply with its retry-after and nothing else; idempotency comes first."""

from __future__ import annotations

import dataclasses

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import ledger
from api.app import problem_response
from api.outcomes import rate_limited_problem
from api.problems import RATE_LIMITED
from processors.metrics import RATE_LIMITED_OTHER_TENANTS, ProcessorMetrics
from processors.partition_ledger import (
    REPLY_KIND_HEADER,
    REPLY_NOT_STORED,
    REPLY_RETRY_AFTER_HEADER,
    WIRE_FORMAT,
    PartitionLedger,
    StagedOutputs,
)
from processors.tenant_quotas import QuotaLimits, TenantQuotas
from producers import replies
from schemas.codec import decode_outcome
from schemas.model import Outcome, OutcomeStatus, RejectReason
from tests.unit.ledger_builders import SECOND_US, T0_US, open_account

LIMITS = QuotaLimits(commands_per_second=2, burst=2)  # one token back every 500 ms


def _book(limits: QuotaLimits = LIMITS) -> PartitionLedger:
    return PartitionLedger(0, ledger.LedgerState(wire_format=WIRE_FORMAT), TenantQuotas(limits))


def _reply(outputs: StagedOutputs, index: int) -> tuple[Outcome, dict[str, bytes]]:
    _, value = outputs.replies[index]
    assert value is not None
    headers = {name: bytes(v or b"") for name, v in outputs.reply_headers[index]}
    return decode_outcome(value), headers


def _close(book: PartitionLedger) -> StagedOutputs:
    outputs = book.staged_outputs()
    book.commit()
    return outputs


def test_a_rate_limited_command_gets_a_not_stored_reply_and_nothing_else() -> None:
    book = _book()
    book.decide(open_account("a", key="k1"), T0_US, 0)
    book.decide(open_account("b", key="k2"), T0_US, 1)
    book.decide(open_account("c", key="k3"), T0_US + 100_000, 2)  # 0.2 of a token back
    sequence_before = book.state.head("acme")
    outputs = _close(book)
    assert len(outputs.replies) == 3 and len(outputs.outcomes) == 2 and len(outputs.events) == 2
    outcome, headers = _reply(outputs, 2)
    assert outcome.status is OutcomeStatus.REJECTED
    assert outcome.reason is RejectReason.RATE_LIMITED
    assert outcome.event_sequences == () and outcome.decided_at_us == T0_US + 100_000
    assert outcome.detail == (
        "tenant_id: rate limited: tenant over 2 commands/s (burst 2); retry after 400 ms"
    )
    assert headers[REPLY_KIND_HEADER] == REPLY_NOT_STORED
    assert headers[REPLY_RETRY_AFTER_HEADER] == b"400"
    assert book.state.outcome("acme", "k3") is None  # the key stays free
    assert book.state.head("acme") == sequence_before  # no sequence taken
    assert book.state.stream_time_us == T0_US  # a reply leaves stream time alone
    assert outputs.rejections_by_reason == {"rate_limited": 1}
    assert outputs.rate_limited_by_tenant == {"acme": 1}

    book.decide(open_account("c", key="k3"), T0_US + 100_000 + 400_000, 3)  # the retry
    retry = _close(book)
    outcome, headers = _reply(retry, 0)
    assert outcome.status is OutcomeStatus.ACCEPTED and len(retry.outcomes) == 1
    assert REPLY_RETRY_AFTER_HEADER not in headers


def test_a_duplicate_or_a_reused_key_is_never_rate_limited_and_takes_no_token() -> None:
    book = _book()
    book.decide(open_account("a", key="k1"), T0_US, 0)
    book.decide(open_account("b", key="k2"), T0_US, 1)  # the bucket is empty now
    for offset in range(2, 12):
        book.decide(open_account("a", key="k1"), T0_US, offset)  # duplicates
    book.decide(open_account("other", key="k1"), T0_US, 12)  # key reuse
    outputs = _close(book)
    kinds = [_reply(outputs, n)[0] for n in range(2, 13)]
    assert all(outcome.status is OutcomeStatus.ACCEPTED for outcome in kinds[:-1])
    assert kinds[-1].reason is RejectReason.IDEMPOTENCY_KEY_REUSED
    assert outputs.duplicates == 10 and outputs.rate_limited_by_tenant == {}
    # the bucket refills by record time only: 500 ms later there is exactly one token
    book.decide(open_account("c", key="k3"), T0_US + SECOND_US // 2, 13)
    book.decide(open_account("d", key="k4"), T0_US + SECOND_US // 2, 14)
    outputs = _close(book)
    assert _reply(outputs, 0)[0].status is OutcomeStatus.ACCEPTED
    assert _reply(outputs, 1)[0].reason is RejectReason.RATE_LIMITED


def test_an_invalid_tenant_takes_no_token_and_keeps_its_own_rejection() -> None:
    book = _book(QuotaLimits(commands_per_second=1, burst=1))
    invalid = dataclasses.replace(open_account("a"), tenant_id="_nobody")
    for offset in range(3):
        book.decide(invalid, T0_US, offset)
    outputs = _close(book)
    assert {_reply(outputs, n)[0].reason for n in range(3)} == {RejectReason.INVALID_COMMAND}
    assert book.quotas is not None and book.quotas.tenant_count == 0


def test_another_tenant_on_the_partition_is_not_limited_by_a_flood() -> None:
    book = _book()
    for offset in range(100):
        book.decide(open_account(f"a{offset}", tenant="loud"), T0_US + offset, offset)
    book.decide(open_account("q", tenant="quiet"), T0_US + 200, 100)
    outputs = _close(book)
    assert outputs.rate_limited_by_tenant == {"loud": 98}
    assert _reply(outputs, 100)[0].status is OutcomeStatus.ACCEPTED


def test_an_aborted_batch_gives_its_tokens_back() -> None:
    book = _book(QuotaLimits(commands_per_second=1, burst=1))
    book.decide(open_account("a", key="k1"), T0_US, 0)
    book.abort()  # the batch is read again and must be decided the same way
    book.decide(open_account("a", key="k1"), T0_US, 0)
    outputs = _close(book)
    assert _reply(outputs, 0)[0].status is OutcomeStatus.ACCEPTED


def test_the_counter_has_a_bounded_tenant_label() -> None:
    metrics = ProcessorMetrics(rate_limited_tenant_labels_max=2)
    for tenant in ("t1", "t2", "t3", "t4", "t1"):
        outputs = StagedOutputs(rate_limited_by_tenant={tenant: 1})
        outputs.count_into(metrics)
    found = {
        sample.labels["tenant"]: sample.value
        for family in text_string_to_metric_families(generate_latest(metrics.registry).decode())
        for sample in family.samples
        if sample.name == "streamledger_processor_rate_limited_commands_total"
    }
    assert found == {"t1": 2.0, "t2": 1.0, RATE_LIMITED_OTHER_TENANTS: 2.0}


def test_the_sdk_reads_the_retry_after_from_the_reply() -> None:
    """``producers.replies.reply_of`` (what ``OutcomeWaiter.request_reply`` returns) reads the
    headers the processor writes: the SDK and the processor agree on the contract's names."""
    assert replies.REPLY_KIND_HEADER == REPLY_KIND_HEADER
    assert replies.REPLY_RETRY_AFTER_HEADER == REPLY_RETRY_AFTER_HEADER
    book = _book(QuotaLimits(commands_per_second=4, burst=1))
    book.decide(open_account("a", key="k1"), T0_US, 0)
    book.decide(open_account("b", key="k2"), T0_US, 1)
    outputs = _close(book)
    first, limited = (
        replies.reply_of(value or b"", headers)
        for (_, value), headers in zip(outputs.replies, outputs.reply_headers, strict=True)
    )
    assert (first.kind, first.retry_after_ms) == ("decided", None)
    assert (limited.kind, limited.retry_after_ms) == ("not_stored", 250)
    assert limited.outcome.reason is RejectReason.RATE_LIMITED


def test_the_api_turns_a_rate_limited_reply_into_a_429_with_retry_after() -> None:
    """``api.outcomes.rate_limited_problem`` reads the reply the processor stages (and skips
    every other reply); the problem response carries ``Retry-After`` in whole seconds."""
    book = _book(QuotaLimits(commands_per_second=1, burst=1))
    book.decide(open_account("a", key="k1"), T0_US, 0)
    book.decide(open_account("b", key="k2"), T0_US + 1_000, 1)
    outputs = _close(book)
    (_, decided), (_, limited) = outputs.replies
    decided_headers, limited_headers = (
        [(name, bytes(value or b"")) for name, value in headers]
        for headers in outputs.reply_headers
    )
    assert rate_limited_problem(decided or b"", decided_headers) is None
    problem = rate_limited_problem(limited or b"", limited_headers)
    assert problem is not None and problem.kind is RATE_LIMITED and problem.kind.status == 429
    assert problem.extensions["retry_after_ms"] == 999
    assert problem.extensions["reason"] == "rate_limited"
    assert problem_response(problem).headers["Retry-After"] == "1"
