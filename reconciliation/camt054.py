"""ISO 20022 camt.054 (Bank-to-Customer Debit/Credit Notification) → a ``ParsedStatement`` (pure).

A notification reports booked (or pending) entries of an account as they happen, without the
period and balances of a statement. Its ``Ntfctn`` element has the ``Acct`` and ``Ntry``
elements of camt.053's ``Stmt``, so ``reconciliation.camt053`` reads it (any
``camt.054.001.NN`` version), with locations such as ``Ntfctn/Ntry[2]/Amt``. The result has no
balances and no period (decision 0099): a notification never says "these are all the entries of
those days", so it closes no movement; a later camt.053, BAI2 or CSV statement of the same days
does, and its lines already notified (same ``AcctSvcrRef``) are not imported twice.
"""

from __future__ import annotations

import re
from typing import Final

from reconciliation.camt053 import Document, parse_document
from reconciliation.statement import (
    AccountTerms,
    ParsedStatement,
    StatementFormat,
    StatementRejected,
)

NAMESPACE_PATTERN: Final = re.compile(r"\{(urn:iso:std:iso:20022:tech:xsd:camt\.054\.001\.\d{2})\}")
NOTIFICATION_DOCUMENT: Final = Document(
    namespace_pattern=NAMESPACE_PATTERN,
    container="BkToCstmrDbtCdtNtfctn/Ntfctn",
    report="Ntfctn",
    format=StatementFormat.CAMT054,
    has_balances=False,
)
# where the root element's namespace is declared: the first bytes of any real file
NAMESPACE_SEARCH_BYTES: Final = 4_096
NAMESPACE_MARKER: Final = b"urn:iso:std:iso:20022:tech:xsd:camt.054."


def parse(
    content: bytes, account: AccountTerms, *, bank_account: str | None = None
) -> ParsedStatement | StatementRejected:
    """The one notification of ``content`` (or the one for ``bank_account`` when the file holds
    several) in ``account``'s currency and scale, or why the file is refused."""
    return parse_document(content, account, NOTIFICATION_DOCUMENT, bank_account=bank_account)


def xml_format(content: bytes) -> StatementFormat:
    """The camt message an XML file (whose format was not named) holds: camt.054 when its first
    bytes declare the camt.054 namespace, else camt.053 (whose parser then says what is wrong)."""
    if NAMESPACE_MARKER in content[:NAMESPACE_SEARCH_BYTES]:
        return StatementFormat.CAMT054
    return StatementFormat.CAMT053
