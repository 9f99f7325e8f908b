"""A seeded, reproducible ledger workload, and poison records for dead-letter tests.

``generate(plan)`` is pure: the same ``LoadPlan`` (seed included) yields the same commands, in
the same order, with the same timestamps. Each command comes with its *intent*, the outcome the
workload means to provoke, so a run can be checked against the ledger afterwards:

- ``open_account`` first, for every tenant: one unrestricted ``funding`` account and
  ``accounts_per_tenant`` customer accounts that must not go into a net debit (some with an
  overdraft limit), then a ``fund`` transfer from ``funding`` to each customer;
- then ``commands`` more, drawn by share: ``transfer`` (posted), ``pending`` (with a long
  timeout, or ``expiring`` with ``short_timeout_s`` so stream time expires it), ``post_pending``
  (full or partial) and ``void_pending`` of open pending transfers, ``reversal`` of an earlier
  posted transfer, ``duplicate`` (an earlier command again, byte for byte), ``key_reuse`` (an
  earlier key with another amount), ``overdraft`` (more than the debit account can give) and
  ``unknown_account``;
- multi-leg transactions (issue 16), 0 by default (decision 0045): ``fee_split`` (a customer pays
  a merchant, the platform 2.6 % and the card network 0.3 % in one 3-posting transaction),
  ``payout`` (``funding`` pays 10 to 50 sellers in one transaction) and ``fx`` (a customer's
  money converted into another currency through the tenant's liquidity accounts, the rate in
  ``metadata``: ``fx_rate``, ``fx_pair``). When a share is above 0 the opening phase also opens
  the accounts they need (``platform``, ``network``; ``seller-NNNN``; ``fx-liquidity-CUR`` and
  ``wallet-CUR``), after the funding transfers.

The generator tracks what each customer can still give (posted and reserved), so ordinary
transfers are meant to succeed and the failure intents are meant to fail. ``poison_records``
makes undecodable records of three kinds (garbage, unknown fingerprint, truncated).
"""

from __future__ import annotations

import dataclasses
import random
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Final

from schemas.model import (
    Command,
    OpenAccount,
    Posting,
    PostPending,
    PostTransaction,
    Transfer,
    VoidPending,
)
from streamledger.setting_fields import Declaration, check_declared, decimal_limit, limit

FUNDING_ACCOUNT: Final = "funding"
RECENT_COMMANDS_MAX: Final = 1_000  # earlier commands kept per tenant for duplicates/reversals
OPEN_PENDING_MAX: Final = 1_000  # open pending transfers tracked per tenant
INITIAL_FUNDS: Final = 1_000_000_000
POISON_KINDS: Final = ("garbage", "unknown_fingerprint", "truncated")
POISON_LENGTH_MAX: Final = 64
VOID_SHARE_OF_FINISHED: Final = 0.25  # the rest of the finished pending transfers are posted
FULL_SHARE_OF_POSTED: Final = 0.5  # the rest are posted partially
# Bounds of a plan: generous, finite.
SEED_MAX: Final = 10**18 - 1
TENANTS_MAX: Final = 100_000
ACCOUNTS_PER_TENANT_MAX: Final = 10_000_000
COMMANDS_MAX: Final = 10**12
TIME_US_MAX: Final = 253_402_300_799_999_999  # 9999-12-31T23:59:59.999999Z
AMOUNT_MAX: Final = 10**15
# Multi-leg transactions (decision 0045).
PLATFORM_ACCOUNT: Final = "platform"
NETWORK_ACCOUNT: Final = "network"
PLATFORM_FEE_PER_MILLE: Final = 26  # 2.6 % of a fee-split payment
NETWORK_FEE_PER_MILLE: Final = 3  # 0.3 %
FEE_SPLIT_AMOUNT_MIN: Final = 3  # merchant, platform and network each get at least 1
PAYOUT_SELLERS_MIN: Final = 10
PAYOUT_SELLERS_MAX: Final = 50  # below schemas.limits.POSTINGS_MAX (64)
# Reference units of each currency per US dollar; an unlisted currency counts as 1. Each FX
# conversion moves its rate by up to FX_RATE_JITTER either way (seeded).
FX_UNITS_PER_USD: Final = {"USD": "1", "EUR": "0.92", "GBP": "0.79", "CHF": "0.88", "JPY": "150"}
FX_RATE_JITTER: Final = 0.005
FX_RATE_PLACES: Final = Decimal("0.000001")


def share(help_text: str) -> dict[str, Declaration]:
    """A fraction of the commands after the opening phase."""
    return decimal_limit(0.0, 1.0, "fraction of the commands", help_text)


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadPlan:
    """What to generate. Shares are fractions of the commands after the opening phase.

    Each number is declared once on its field: ``loadgen``'s flag, its help and the check derive
    from it (``streamledger.setting_fields``, decision 0035)."""

    seed: int = field(
        default=1, metadata=limit(0, SEED_MAX, "seed", "the same seed sends the same commands")
    )
    tenants: int = field(
        default=4, metadata=limit(1, TENANTS_MAX, "tenants", "tenants in the workload")
    )
    accounts_per_tenant: int = field(
        default=10,
        metadata=limit(
            2,
            ACCOUNTS_PER_TENANT_MAX,
            "accounts",
            "customer accounts per tenant",
            flag="--accounts",
        ),
    )
    commands: int = field(
        default=10_000,
        metadata=limit(0, COMMANDS_MAX, "commands", "mixed commands after the opening phase"),
    )
    start_us: int = field(
        default=1_700_000_000_000_000,
        metadata=limit(
            0,
            TIME_US_MAX,
            "us since the epoch",
            "submitted_at_us of the first command",
            default_text="now (loadgen), 1700000000000000 (a plan built in code)",
        ),
    )
    step_us: int = field(
        default=1_000, metadata=limit(0, 3_600_000_000, "us", "submitted_at_us grows by this")
    )
    currencies: tuple[str, ...] = ("USD", "EUR")
    amount_max: int = field(
        default=10_000, metadata=limit(1, AMOUNT_MAX, "minor units", "largest transfer amount")
    )
    overdraft_limit: int = field(
        default=50_000,
        metadata=limit(
            0, AMOUNT_MAX, "minor units", "overdraft given to every third customer account"
        ),
    )
    pending_share: float = field(
        default=0.15, metadata=share("pending transfers with a long timeout")
    )
    expiring_share: float = field(
        default=0.05, metadata=share("pending transfers that expire after short_timeout_s")
    )
    short_timeout_s: int = field(
        default=1, metadata=limit(1, 86_400, "s", "timeout of an expiring pending transfer")
    )
    long_timeout_s: int = field(
        default=86_400,
        metadata=limit(1, 31_536_000, "s", "timeout of the other pending transfers"),
    )
    finish_pending_share: float = field(
        default=0.15, metadata=share("post or void an open pending transfer")
    )
    reversal_share: float = field(
        default=0.03, metadata=share("reversals of an earlier posted transfer")
    )
    duplicate_share: float = field(
        default=0.05, metadata=share("an earlier command again, byte for byte")
    )
    key_reuse_share: float = field(
        default=0.02, metadata=share("an earlier idempotency key with another amount")
    )
    overdraft_share: float = field(
        default=0.02, metadata=share("more than the debit account can give")
    )
    unknown_account_share: float = field(
        default=0.01, metadata=share("transfers naming an account that does not exist")
    )
    fee_split_share: float = field(
        default=0.0,
        metadata=share("3-posting transactions: merchant, platform fee, network fee"),
    )
    payout_share: float = field(
        default=0.0,
        metadata=share(
            f"transactions paying {PAYOUT_SELLERS_MIN} to {PAYOUT_SELLERS_MAX} sellers at once"
        ),
    )
    fx_share: float = field(
        default=0.0,
        metadata=share("FX conversions through liquidity accounts (needs two currencies)"),
    )

    def __post_init__(self) -> None:
        check_declared(self)
        shares = (
            self.pending_share + self.expiring_share + self.finish_pending_share
            + self.reversal_share + self.duplicate_share + self.key_reuse_share
            + self.overdraft_share + self.unknown_account_share
            + self.fee_split_share + self.payout_share + self.fx_share
        )  # fmt: skip
        if not 0.0 <= shares <= 1.0:
            raise ValueError(f"the shares add up to {shares:.3f}; they must stay within 0..1")
        if self.fx_share > 0 and len(set(self.currencies)) < 2:
            raise ValueError("fx_share needs at least two currencies")

    def transaction_accounts(self, currency: str) -> tuple[str, ...]:
        """The accounts a tenant of ``currency`` needs for the multi-leg shares above 0."""
        accounts: list[str] = []
        if self.fee_split_share > 0:
            accounts += [PLATFORM_ACCOUNT, NETWORK_ACCOUNT]
        if self.payout_share > 0:
            accounts += seller_accounts()
        if self.fx_share > 0:
            other = fx_quote_currency(self.currencies, currency)
            accounts += [liquidity_account(currency), liquidity_account(other), wallet(other)]
        return tuple(accounts)


def seller_accounts() -> list[str]:
    return [f"seller-{number:04d}" for number in range(1, PAYOUT_SELLERS_MAX + 1)]


def liquidity_account(currency: str) -> str:
    return f"fx-liquidity-{currency.lower()}"


def wallet(currency: str) -> str:
    """A customer's account in another currency, credited by FX conversions."""
    return f"wallet-{currency.lower()}"


def fx_quote_currency(currencies: tuple[str, ...], base: str) -> str:
    """The currency a tenant of ``base`` converts into: the next distinct one in the plan."""
    distinct = list(dict.fromkeys(currencies))
    return distinct[(distinct.index(base) + 1) % len(distinct)]


@dataclass(frozen=True, slots=True)
class GeneratedCommand:
    command: Command
    intent: str


@dataclass(slots=True)
class TenantBook:
    """What the generator knows of one tenant: accounts, what they can give, recent commands."""

    tenant_id: str
    currency: str
    customers: list[str]
    available: dict[str, int]  # posted credits - debits - reserved, plus overdraft
    posted: deque[Transfer] = field(default_factory=lambda: deque(maxlen=RECENT_COMMANDS_MAX))
    recent: deque[Command] = field(default_factory=lambda: deque(maxlen=RECENT_COMMANDS_MAX))
    open_pending: dict[str, Transfer] = field(default_factory=dict)
    counter: int = 0

    def next_key(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter:08d}"


class Generator:
    """The state of one generation run; ``generate`` drives it."""

    def __init__(self, plan: LoadPlan) -> None:
        self.plan = plan
        self.random = random.Random(plan.seed)  # noqa: S311 - a reproducible workload, not secrets
        self.sequence = 0
        self.books = [
            TenantBook(
                tenant_id=f"tenant-{index:04d}",
                currency=plan.currencies[index % len(plan.currencies)],
                customers=[f"acct-{number:04d}" for number in range(1, plan.accounts_per_tenant)],
                available={},
            )
            for index in range(plan.tenants)
        ]

    def now_us(self) -> int:
        self.sequence += 1
        return self.plan.start_us + self.sequence * self.plan.step_us

    def emit(self, book: TenantBook, command: Command, intent: str) -> GeneratedCommand:
        book.recent.append(command)
        return GeneratedCommand(command, intent)

    # ------------------------------------------------------------------ opening phase

    def opening(self) -> Iterator[GeneratedCommand]:
        for book in self.books:
            yield self.emit(
                book, self.open_account(book, FUNDING_ACCOUNT, flagged=False), "open_account"
            )
            for position, account in enumerate(book.customers):
                with_overdraft = position % 3 == 0
                command = self.open_account(book, account, flagged=True, overdraft=with_overdraft)
                book.available[account] = self.plan.overdraft_limit if with_overdraft else 0
                yield self.emit(book, command, "open_account")
        for book in self.books:
            for account in book.customers:
                yield self.emit(
                    book, self.transfer(book, FUNDING_ACCOUNT, account, INITIAL_FUNDS), "fund"
                )
        for book in self.books:
            for account in self.plan.transaction_accounts(book.currency):
                currency = account_currency(account, book.currency)
                command = self.open_account(book, account, flagged=False, currency=currency)
                yield self.emit(book, command, "open_account")

    def open_account(
        self,
        book: TenantBook,
        account: str,
        *,
        flagged: bool,
        overdraft: bool = False,
        currency: str | None = None,
    ) -> OpenAccount:
        return OpenAccount(
            tenant_id=book.tenant_id,
            idempotency_key=book.next_key("open"),
            submitted_at_us=self.now_us(),
            account_id=account,
            currency=currency or book.currency,
            asset_scale=2,
            debits_must_not_exceed_credits=flagged,
            overdraft_limit=self.plan.overdraft_limit if overdraft else None,
        )

    def transfer(
        self,
        book: TenantBook,
        debit: str,
        credit: str,
        amount: int,
        *,
        pending: bool = False,
        timeout_s: int | None = None,
        reverses: str | None = None,
    ) -> Transfer:
        key = book.next_key("tr")
        command = Transfer(
            tenant_id=book.tenant_id,
            idempotency_key=key,
            submitted_at_us=self.now_us(),
            transfer_id=key,
            debit_account_id=debit,
            credit_account_id=credit,
            amount=amount,
            currency=book.currency,
            pending=pending,
            pending_timeout_s=timeout_s,
            reverses=reverses,
        )
        self.book_effect(book, command)
        return command

    def book_effect(self, book: TenantBook, command: Transfer) -> None:
        if command.debit_account_id in book.available:
            book.available[command.debit_account_id] -= command.amount
        if command.credit_account_id in book.available and not command.pending:
            book.available[command.credit_account_id] += command.amount
        if not command.pending:
            book.posted.append(command)

    # ------------------------------------------------------------------ the mix

    def mixed(self) -> Iterator[GeneratedCommand]:
        plan = self.plan
        choices = (
            (plan.pending_share, self.pending),
            (plan.expiring_share, self.expiring),
            (plan.finish_pending_share, self.finish_pending),
            (plan.reversal_share, self.reversal),
            (plan.duplicate_share, self.duplicate),
            (plan.key_reuse_share, self.key_reuse),
            (plan.overdraft_share, self.overdraft),
            (plan.unknown_account_share, self.unknown_account),
            (plan.fee_split_share, self.fee_split),
            (plan.payout_share, self.payout),
            (plan.fx_share, self.fx),
        )
        for _ in range(plan.commands):
            book = self.random.choice(self.books)
            draw = self.random.random()
            for share, make in choices:
                if draw < share:
                    generated = make(book)
                    break
                draw -= share
            else:
                generated = None
            yield generated or self.posted(book)

    def pick_payer(self, book: TenantBook) -> tuple[str, str, int] | None:
        """A customer that can give, another account, and an amount it can give."""
        payer = self.random.choice(book.customers)
        payee = self.random.choice([FUNDING_ACCOUNT, *book.customers])
        amount = self.random.randint(1, self.plan.amount_max)
        if payee == payer or book.available[payer] < amount:
            return None
        return payer, payee, amount

    def posted(self, book: TenantBook) -> GeneratedCommand:
        picked = self.pick_payer(book)
        if picked is None:
            account = self.random.choice(book.customers)
            amount = self.random.randint(1, self.plan.amount_max)
            return self.emit(
                book, self.transfer(book, FUNDING_ACCOUNT, account, amount), "transfer"
            )
        return self.emit(book, self.transfer(book, *picked), "transfer")

    def pending(self, book: TenantBook, *, timeout_s: int | None = None) -> GeneratedCommand | None:
        picked = self.pick_payer(book)
        if picked is None:
            return None
        expiring = timeout_s is not None
        timeout = timeout_s if expiring else self.plan.long_timeout_s
        command = self.transfer(book, *picked, pending=True, timeout_s=timeout)
        if not expiring and len(book.open_pending) < OPEN_PENDING_MAX:
            book.open_pending[command.transfer_id] = command
        return self.emit(book, command, "expiring" if expiring else "pending")

    def expiring(self, book: TenantBook) -> GeneratedCommand | None:
        return self.pending(book, timeout_s=self.plan.short_timeout_s)

    def finish_pending(self, book: TenantBook) -> GeneratedCommand | None:
        if not book.open_pending:
            return None
        transfer_id = self.random.choice(sorted(book.open_pending))
        original = book.open_pending.pop(transfer_id)
        key = book.next_key("fin")
        submitted_at_us = self.now_us()
        if self.random.random() < VOID_SHARE_OF_FINISHED:
            book.available[original.debit_account_id] += original.amount
            void = VoidPending(
                tenant_id=book.tenant_id,
                idempotency_key=key,
                submitted_at_us=submitted_at_us,
                transfer_id=transfer_id,
            )
            return self.emit(book, void, "void_pending")
        full = self.random.random() < FULL_SHARE_OF_POSTED
        amount = None if full else self.random.randint(1, original.amount)
        posted = original.amount if amount is None else amount
        book.available[original.debit_account_id] += original.amount - posted
        if original.credit_account_id in book.available:
            book.available[original.credit_account_id] += posted
        post = PostPending(
            tenant_id=book.tenant_id,
            idempotency_key=key,
            submitted_at_us=submitted_at_us,
            transfer_id=transfer_id,
            amount=amount,
        )
        return self.emit(book, post, "post_pending")

    def reversal(self, book: TenantBook) -> GeneratedCommand | None:
        candidates = [t for t in book.posted if t.reverses is None]
        if not candidates:
            return None
        original = self.random.choice(candidates)
        payer = original.credit_account_id
        if payer in book.available and book.available[payer] < original.amount:
            return None
        book.posted.remove(original)  # reversed once, in full
        command = self.transfer(
            book, payer, original.debit_account_id, original.amount, reverses=original.transfer_id
        )
        return self.emit(book, command, "reversal")

    def duplicate(self, book: TenantBook) -> GeneratedCommand | None:
        if not book.recent:
            return None
        return GeneratedCommand(self.random.choice(book.recent), "duplicate")

    def key_reuse(self, book: TenantBook) -> GeneratedCommand | None:
        transfers = [c for c in book.recent if isinstance(c, Transfer)]
        if not transfers:
            return None
        original = self.random.choice(transfers)
        changed = dataclasses.replace(
            original,
            amount=original.amount % self.plan.amount_max + 1,
            submitted_at_us=self.now_us(),
        )
        return GeneratedCommand(changed, "key_reuse")

    def overdraft(self, book: TenantBook) -> GeneratedCommand:
        payer = self.random.choice(book.customers)
        amount = max(book.available[payer], 0) + self.random.randint(1, self.plan.amount_max)
        key = book.next_key("od")
        command = Transfer(
            tenant_id=book.tenant_id,
            idempotency_key=key,
            submitted_at_us=self.now_us(),
            transfer_id=key,
            debit_account_id=payer,
            credit_account_id=FUNDING_ACCOUNT,
            amount=amount,
            currency=book.currency,
        )
        return self.emit(book, command, "overdraft")

    def unknown_account(self, book: TenantBook) -> GeneratedCommand:
        key = book.next_key("ua")
        command = Transfer(
            tenant_id=book.tenant_id,
            idempotency_key=key,
            submitted_at_us=self.now_us(),
            transfer_id=key,
            debit_account_id=FUNDING_ACCOUNT,
            credit_account_id=f"ghost-{book.counter:08d}",
            amount=self.random.randint(1, self.plan.amount_max),
            currency=book.currency,
        )
        return self.emit(book, command, "unknown_account")

    # ------------------------------------------------------------------ multi-leg transactions

    def transaction(
        self,
        book: TenantBook,
        postings: list[Posting],
        *,
        metadata: tuple[tuple[str, str], ...] = (),
    ) -> PostTransaction:
        key = book.next_key("tx")
        return PostTransaction(
            tenant_id=book.tenant_id,
            idempotency_key=key,
            submitted_at_us=self.now_us(),
            metadata=metadata,
            transaction_id=key,
            postings=tuple(postings),
        )

    def fee_split(self, book: TenantBook) -> GeneratedCommand | None:
        """A customer pays a merchant; the platform and the card network take their fees."""
        payer = self.random.choice(book.customers)
        merchant = self.random.choice([FUNDING_ACCOUNT, *book.customers])
        amount = self.random.randint(
            FEE_SPLIT_AMOUNT_MIN, max(FEE_SPLIT_AMOUNT_MIN, self.plan.amount_max)
        )
        if merchant == payer or book.available[payer] < amount:
            return None
        platform_fee = max(1, amount * PLATFORM_FEE_PER_MILLE // 1000)
        network_fee = max(1, amount * NETWORK_FEE_PER_MILLE // 1000)
        to_merchant = amount - platform_fee - network_fee
        legs = (
            (merchant, to_merchant),
            (PLATFORM_ACCOUNT, platform_fee),
            (NETWORK_ACCOUNT, network_fee),
        )
        postings = [posting(payer, credit, part, book.currency) for credit, part in legs]
        book.available[payer] -= amount
        if merchant in book.available:
            book.available[merchant] += to_merchant
        return self.emit(book, self.transaction(book, postings), "fee_split")

    def payout(self, book: TenantBook) -> GeneratedCommand:
        """``funding`` pays 10 to 50 sellers in one transaction (never refused: funding is
        unrestricted, sellers only receive)."""
        count = self.random.randint(PAYOUT_SELLERS_MIN, PAYOUT_SELLERS_MAX)
        sellers = self.random.sample(seller_accounts(), count)
        amount_max = self.plan.amount_max
        postings = [
            posting(FUNDING_ACCOUNT, seller, self.random.randint(1, amount_max), book.currency)
            for seller in sellers
        ]
        return self.emit(book, self.transaction(book, postings), "payout")

    def fx(self, book: TenantBook) -> GeneratedCommand | None:
        """A customer converts into another currency: ``customer → fx-liquidity-base`` and
        ``fx-liquidity-quote → wallet-quote``, the rate in metadata."""
        payer = self.random.choice(book.customers)
        amount = self.random.randint(1, self.plan.amount_max)
        base = book.currency
        quote = fx_quote_currency(self.plan.currencies, base)
        rate = fx_rate(base, quote, self.random.uniform(-FX_RATE_JITTER, FX_RATE_JITTER))
        converted = int((Decimal(amount) * rate).to_integral_value(rounding=ROUND_DOWN))
        if book.available[payer] < amount or converted < 1:
            return None
        postings = [
            posting(payer, liquidity_account(base), amount, base),
            posting(liquidity_account(quote), wallet(quote), converted, quote),
        ]
        book.available[payer] -= amount
        metadata = (("fx_pair", f"{base}/{quote}"), ("fx_rate", str(rate)))
        return self.emit(book, self.transaction(book, postings, metadata=metadata), "fx")


def posting(debit: str, credit: str, amount: int, currency: str) -> Posting:
    return Posting(
        debit_account_id=debit, credit_account_id=credit, amount=amount, currency=currency
    )


def account_currency(account: str, tenant_currency: str) -> str:
    """The currency of a multi-leg account: the wallet and liquidity of the quote currency are
    named after it; every other account is in the tenant's currency."""
    for prefix in ("wallet-", "fx-liquidity-"):
        if account.startswith(prefix):
            return account.removeprefix(prefix).upper()
    return tenant_currency


def fx_rate(base: str, quote: str, jitter: float) -> Decimal:
    """Units of ``quote`` per unit of ``base`` from the reference table, moved by ``jitter``
    (a fraction), to FX_RATE_PLACES."""
    reference = Decimal(FX_UNITS_PER_USD.get(quote, "1")) / Decimal(FX_UNITS_PER_USD.get(base, "1"))
    return (reference * (1 + Decimal(repr(jitter)))).quantize(FX_RATE_PLACES)


def generate(plan: LoadPlan) -> Iterator[GeneratedCommand]:
    """The workload of ``plan``: the opening phase, then ``plan.commands`` mixed commands."""
    generator = Generator(plan)
    yield from generator.opening()
    yield from generator.mixed()


def opening_count(plan: LoadPlan) -> int:
    """How many commands the opening phase yields (accounts, then one funding per customer, then
    the accounts of the multi-leg shares above 0)."""
    currencies = [plan.currencies[index % len(plan.currencies)] for index in range(plan.tenants)]
    extra = sum(len(plan.transaction_accounts(currency)) for currency in currencies)
    return plan.tenants * (2 * plan.accounts_per_tenant - 1) + extra


def poison_records(
    seed: int, count: int, tenant_ids: tuple[str, ...], sample: bytes
) -> list[tuple[bytes, bytes, str]]:
    """``count`` undecodable records as (key, value, kind), kinds in turn from ``POISON_KINDS``.

    ``sample`` is a valid encoded command: ``truncated`` cuts it, ``unknown_fingerprint``
    keeps its body behind a fingerprint no schema has.
    """
    chooser = random.Random(seed)  # noqa: S311 - reproducible test input
    records = []
    for index in range(count):
        kind = POISON_KINDS[index % len(POISON_KINDS)]
        key = chooser.choice(tenant_ids).encode()
        if kind == "garbage":
            value = b"\x00" + chooser.randbytes(chooser.randint(1, POISON_LENGTH_MAX))
        elif kind == "unknown_fingerprint":
            value = b"\xc3\x01" + b"\xff" * 8 + sample[10:]
        else:
            value = sample[: chooser.randint(11, len(sample) - 1)]
        records.append((key, value, kind))
    return records
