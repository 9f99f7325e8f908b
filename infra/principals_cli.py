"""``streamledger principals create | list | revoke``: Kafka principals and their ACLs.

    streamledger principals create bank-a --role upstream [--read-replies]
        [--producer-byte-rate BYTES_PER_S] [--request-percentage PERCENT]
    streamledger principals create audit --role subscriber --read ledger.events
    streamledger principals list
    streamledger principals revoke bank-a

Needs a stack with ``--kafka-security scram`` (decision 0062); the password of a created
principal is written to ``{home}/kafka-principals/<name>`` (mode 0600) and never printed.
"""

from __future__ import annotations

import argparse

from infra import principals
from kafka_adapter.security import password_path
from streamledger.cli_parser import EXIT_OK, Subparsers
from streamledger.errors import SettingError
from streamledger.settings import Settings, parse_int_in_range, parse_principal_name


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "principals", help="Kafka principals (SCRAM users) and their least-privilege ACLs"
    )
    actions = parser.add_subparsers(dest="principals_command", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="create or update a principal: credentials + ACLs")
    create.add_argument("name", metavar="NAME", help="the principal's user name")
    create.add_argument("--role", required=True, choices=principals.ROLES, help="what it may do")
    create.add_argument(
        "--read",
        action="append",
        default=[],
        metavar="TOPIC",
        help=f"subscriber: a topic it may read ({', '.join(principals.SUBSCRIBABLE_TOPICS)})",
    )
    create.add_argument(
        "--group-prefix", default="", help="subscriber: its consumer groups' prefix"
    )
    create.add_argument(
        "--read-replies", action="store_true", help="upstream: may also read ledger.replies"
    )
    low, high = principals.PRODUCER_BYTE_RATE_RANGE
    create.add_argument(
        "--producer-byte-rate",
        default=str(principals.PRODUCER_BYTE_RATE_DEFAULT),
        metavar="BYTES_PER_S",
        help=f"upstream: broker quota, bytes/s ({low}..{high},"
        f" default {principals.PRODUCER_BYTE_RATE_DEFAULT})",
    )
    low, high = principals.REQUEST_PERCENTAGE_RANGE
    create.add_argument(
        "--request-percentage",
        default=str(principals.REQUEST_PERCENTAGE_DEFAULT),
        metavar="PERCENT",
        help=f"upstream: broker quota, % of one broker thread ({low}..{high},"
        f" default {principals.REQUEST_PERCENTAGE_DEFAULT})",
    )
    create.set_defaults(handler=run_create)
    listing = actions.add_parser("list", help="every principal, its credentials and its ACLs")
    listing.set_defaults(handler=run_list)
    revoke = actions.add_parser("revoke", help="delete a principal's ACLs and credentials")
    revoke.add_argument("name", metavar="NAME")
    revoke.set_defaults(handler=run_revoke)


def principal_name(text: str) -> str:
    try:
        return parse_principal_name(text)
    except ValueError as exc:
        raise SettingError(f"NAME: {exc}") from None


def quota_of(arguments: argparse.Namespace) -> principals.Quota:
    try:
        byte_rate = parse_int_in_range(
            arguments.producer_byte_rate, *principals.PRODUCER_BYTE_RATE_RANGE
        )
        percentage = parse_int_in_range(
            arguments.request_percentage, *principals.REQUEST_PERCENTAGE_RANGE
        )
    except ValueError as exc:
        raise SettingError(f"--producer-byte-rate / --request-percentage: {exc}") from None
    return principals.Quota(byte_rate, percentage)


def run_create(arguments: argparse.Namespace, settings: Settings) -> int:
    spec = principals.PrincipalSpec(
        name=principal_name(arguments.name),
        role=arguments.role,
        read_topics=tuple(arguments.read),
        read_replies=arguments.read_replies,
        group_prefix=arguments.group_prefix,
    )
    quota = quota_of(arguments) if spec.role == principals.ROLE_UPSTREAM else None
    grants = principals.create(settings, spec)
    print(f"{spec.name}: {spec.role}, password in {password_path(settings.home, spec.name)}")
    for grant in grants:
        print(f"    {grant.line()}")
    if quota is not None:
        principals.set_quotas(settings, spec.name, quota)
        print(f"    quota {quota.text()}")
    return EXIT_OK


def run_list(arguments: argparse.Namespace, settings: Settings) -> int:
    for listing in principals.list_principals(settings):
        for line in listing.lines():
            print(line)
    return EXIT_OK


def run_revoke(arguments: argparse.Namespace, settings: Settings) -> int:
    name = principal_name(arguments.name)
    removed = principals.revoke(settings, name)
    print(f"{name}: revoked ({removed} ACLs and its credentials removed)")
    return EXIT_OK
