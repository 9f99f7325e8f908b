"""An account statement as a PDF a customer would get (reportlab, decision 0033).

A4 portrait, the base-14 Helvetica fonts (nothing to embed; ids are ASCII by the contract):
a header with the account, currency and period, the opening and closing balances, the entries
table (time, sequence, event, transfer, kind, debit, credit, balance after), the totals, and on
every page its number ("Page 2 of 5") and the verification line: the tenant sequence and event
hash the statement covers, so the reader can check it against the hash chain. The pages are laid
out before drawing (``page_rows``), so "of N" is known without a second pass. ``invariant=1``
makes the bytes a function of the statement alone (no creation time, no random document id).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from reportlab.lib.pagesizes import A4
from reportlab.pdfgen.canvas import Canvas

from projections.report_formats import decimal_text, iso_time
from projections.reports import AccountStatement, Counters, StatementEntry

PAGE_WIDTH, PAGE_HEIGHT = A4
MARGIN = 40.0
LINE_HEIGHT = 12.0
ROWS_FIRST_PAGE = 48  # the header and balances take the top of page 1
ROWS_PER_PAGE = 56  # leaves room for the totals and the footer
FONT = "Helvetica"
FONT_BOLD = "Helvetica-Bold"
FONT_SIZE = 8
TITLE_SIZE = 14
# x of each column's left edge (text) or right edge (amounts, drawn right-aligned)
COLUMNS = (
    ("Effective at (UTC)", MARGIN, False),
    ("Seq", 168.0, False),
    ("Event", 200.0, False),
    ("Transfer", 268.0, False),
    ("Kind", 364.0, False),
    ("Debit", 445.0, True),
    ("Credit", 502.0, True),
    ("Balance", PAGE_WIDTH - MARGIN, True),
)
TRANSFER_CHARACTERS_MAX = 20  # longer transfer ids are shortened with "..." to fit the column


def page_rows(entries: Sequence[StatementEntry]) -> list[Sequence[StatementEntry]]:
    """The entries of each page (at least one page, even with no entry)."""
    pages: list[Sequence[StatementEntry]] = [entries[:ROWS_FIRST_PAGE]]
    for start in range(ROWS_FIRST_PAGE, len(entries), ROWS_PER_PAGE):
        pages.append(entries[start : start + ROWS_PER_PAGE])
    return pages


def render_statement_pdf(statement: AccountStatement) -> bytes:
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=A4, invariant=1)
    canvas.setTitle(f"Statement {statement.tenant_id}/{statement.account_id}")
    canvas.setAuthor("StreamLedger")
    pages = page_rows(statement.entries)
    for number, rows in enumerate(pages, start=1):
        top = PAGE_HEIGHT - MARGIN
        if number == 1:
            top = draw_header(canvas, statement, top)
        top = draw_table(canvas, statement, rows, top)
        if number == len(pages):
            draw_totals(canvas, statement, top)
        draw_footer(canvas, statement, number, len(pages))
        canvas.showPage()
    canvas.save()
    return buffer.getvalue()


def money(statement: AccountStatement, amount: int) -> str:
    return f"{decimal_text(amount, statement.asset_scale)}"


def balance_line(statement: AccountStatement, counters: Counters) -> str:
    side = statement.normal_side
    return (
        f"posted {money(statement, counters.posted(side))}   "
        f"pending {money(statement, counters.pending(side))}   "
        f"available {money(statement, counters.available(side))}   {statement.currency}"
    )


def draw_header(canvas: Canvas, statement: AccountStatement, top: float) -> float:
    canvas.setFont(FONT_BOLD, TITLE_SIZE)
    canvas.drawString(MARGIN, top, "Account statement")
    canvas.setFont(FONT, FONT_SIZE + 1)
    lines = (
        f"Tenant: {statement.tenant_id}",
        f"Account: {statement.account_id} ({statement.currency}, scale {statement.asset_scale},"
        f" {statement.normal_side}-normal, opened {iso_time(statement.opened_at)})",
        f"Period: from {iso_time(statement.period_from)} (inclusive)"
        f" to {iso_time(statement.period_to)} (exclusive)",
        f"Opening balance: {balance_line(statement, statement.opening)}",
        f"Closing balance: {balance_line(statement, statement.closing)}",
        f"Entries in period: {statement.totals.entries}. Balance: the posted balance after the"
        " entry's event.",
        "Kind: posted; pending (funds reserved); released (a reservation posted, voided or"
        " expired).",
    )
    y = top - 2 * LINE_HEIGHT
    for line in lines:
        canvas.drawString(MARGIN, y, line)
        y -= LINE_HEIGHT + 2
    return y - LINE_HEIGHT


def draw_table(
    canvas: Canvas, statement: AccountStatement, rows: Sequence[StatementEntry], top: float
) -> float:
    canvas.setFont(FONT_BOLD, FONT_SIZE)
    for title, x, right in COLUMNS:
        (canvas.drawRightString if right else canvas.drawString)(x, top, title)
    canvas.line(MARGIN, top - 3, PAGE_WIDTH - MARGIN, top - 3)
    canvas.setFont(FONT, FONT_SIZE)
    y = top - LINE_HEIGHT - 2
    if not rows:
        canvas.drawString(MARGIN, y, "No entries in this period.")
        return y - LINE_HEIGHT
    for entry in rows:
        for (_, x, right), text in zip(COLUMNS, entry_cells(statement, entry), strict=True):
            (canvas.drawRightString if right else canvas.drawString)(x, y, text)
        y -= LINE_HEIGHT
    return y


def entry_cells(statement: AccountStatement, entry: StatementEntry) -> tuple[str, ...]:
    amount = money(statement, entry.amount)
    transfer = entry.transfer_id
    if len(transfer) > TRANSFER_CHARACTERS_MAX:
        transfer = transfer[: TRANSFER_CHARACTERS_MAX - 3] + "..."
    return (
        iso_time(entry.effective_at),
        str(entry.sequence),
        entry.event_type,
        transfer,
        entry.kind,
        amount if entry.side == "debit" else "",
        amount if entry.side == "credit" else "",
        money(statement, entry.after.posted(statement.normal_side)),
    )


def draw_totals(canvas: Canvas, statement: AccountStatement, top: float) -> None:
    totals = statement.totals
    canvas.line(MARGIN, top + LINE_HEIGHT - 3, PAGE_WIDTH - MARGIN, top + LINE_HEIGHT - 3)
    canvas.setFont(FONT_BOLD, FONT_SIZE)
    y = top - 2
    for label, debits, credits in (
        ("Total posted", totals.debits_posted, totals.credits_posted),
        ("Total reserved (pending)", totals.debits_pending, totals.credits_pending),
        ("Total released", totals.debits_released, totals.credits_released),
    ):
        canvas.drawString(MARGIN, y, label)
        canvas.drawRightString(COLUMNS[5][1], y, money(statement, debits))
        canvas.drawRightString(COLUMNS[6][1], y, money(statement, credits))
        y -= LINE_HEIGHT


def draw_footer(canvas: Canvas, statement: AccountStatement, number: int, count: int) -> None:
    link = statement.last_event
    canvas.setFont(FONT, FONT_SIZE - 1)
    canvas.drawString(
        MARGIN,
        MARGIN - 10,
        f"Verification: covers tenant {statement.tenant_id}'s events 1..{link.sequence};"
        f" SHA-256 of event {link.sequence}: {link.hash.hex()}",
    )
    canvas.drawRightString(PAGE_WIDTH - MARGIN, MARGIN - 22, f"Page {number} of {count}")
