"""The settings of ``streamledger reconcile``: each declared once, on its field (decision 0035).

The matching limits' defaults are the pure core's (``MatchingRules``); the loop's limits are
this class's. Built once at start-up from the flags, checked, passed down.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from reconciliation.matching import MatchingRules
from streamledger.setting_fields import check_declared, limit, text_setting

DEFAULT_RULES: Final = MatchingRules()
GROUP_ID_SUFFIX: Final = "streamledger-reconciler"
NAME_PATTERN: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")


def parse_name(text: str) -> str:
    if NAME_PATTERN.fullmatch(text) is None:
        raise ValueError(f"{text!r} must be 1-64 of A-Z a-z 0-9 . _ -")
    return text


@dataclass(frozen=True, slots=True, kw_only=True)
class MatcherSettings:
    instance_id: str = field(
        default="0",
        metadata=text_setting(
            parse_name, "stable id of this matcher; its transactional.id derives from it"
        ),
    )
    metrics_port: int = field(
        default=0,
        metadata=limit(0, 65_535, "port", "serve /metrics, /healthz, /readyz here (0: none)"),
    )
    date_window_days: int = field(
        default=DEFAULT_RULES.date_window_days,
        metadata=limit(0, 366, "days", "how far apart a line's and a movement's dates may be"),
    )
    sum_items_max: int = field(
        default=DEFAULT_RULES.sum_items_max,
        metadata=limit(2, 8, "items", "most items on the 'many' side of a sum match"),
    )
    sum_candidates_max: int = field(
        default=DEFAULT_RULES.sum_candidates_max,
        metadata=limit(2, 24, "items", "nearest candidates searched for a sum match"),
    )
    open_items_max: int = field(
        default=DEFAULT_RULES.open_items_max,
        metadata=limit(1, 100_000_000, "items", "open lines and movements per partition"),
    )
    movement_retention_days: int = field(
        default=DEFAULT_RULES.movement_retention_days,
        metadata=limit(
            0, 3_660, "days", "how long movements of accounts without a statement are kept"
        ),
    )
    line_identity_days: int = field(
        default=DEFAULT_RULES.line_identity_days,
        metadata=limit(
            0, 3_660, "days", "how far behind the ledger a line id is remembered against copies"
        ),
    )
    decided_unmatched_max: int = field(
        default=DEFAULT_RULES.decided_unmatched_max,
        metadata=limit(
            1,
            10_000_000,
            "items",
            "unmatched items remembered per partition for a manual match (oldest forgotten past)",
        ),
    )
    external_reference_key: str = field(
        default=DEFAULT_RULES.external_reference_key,
        metadata=text_setting(parse_name, "the metadata key holding a movement's bank reference"),
    )
    batch_records_max: int = field(
        default=5_000, metadata=limit(1, 100_000, "records", "input records in one transaction")
    )
    batch_wait_ms: int = field(
        default=200, metadata=limit(1, 60_000, "ms", "longest wait for a batch's first record")
    )
    transaction_timeout_ms: int = field(
        default=60_000,
        metadata=limit(1_000, 900_000, "ms", "the broker aborts a transaction after"),
    )
    session_timeout_ms: int = field(
        default=10_000,
        metadata=limit(1_000, 300_000, "ms", "a silent (killed) matcher's partitions move after"),
    )
    # below `streamledger run`'s stall_timeout_s (180 s): the loop's heartbeat stands still while
    # an assignment is restored
    restore_timeout_s: int = field(
        default=120, metadata=limit(1, 3_600, "s", "longest rebuild of a partition's open items")
    )

    def __post_init__(self) -> None:
        check_declared(self)

    def rules(self) -> MatchingRules:
        return MatchingRules(
            date_window_days=self.date_window_days,
            sum_items_max=self.sum_items_max,
            sum_candidates_max=max(self.sum_candidates_max, self.sum_items_max),
            open_items_max=self.open_items_max,
            movement_retention_days=max(self.movement_retention_days, self.date_window_days),
            line_identity_days=max(self.line_identity_days, self.date_window_days),
            external_reference_key=self.external_reference_key,
            decided_unmatched_max=self.decided_unmatched_max,
        )

    def group_id(self, topic_prefix: str) -> str:
        return f"{topic_prefix}{GROUP_ID_SUFFIX}"

    def transactional_id(self, topic_prefix: str) -> str:
        return f"{topic_prefix}{GROUP_ID_SUFFIX}-{self.instance_id}"
