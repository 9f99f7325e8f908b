"""The bench's topic prefixes, all of one family per process, whose service principals are
granted once (decision 0147).

Every bench run makes a fresh topic prefix per workload and repetition (~50 in a ``--size
full`` run). Under ``kafka_security=scram`` ``infra.topics.apply`` grants the six service
principals their ACLs on each new prefix (decision 0063): their credentials upserted and
their ACLs created, each waited for on every broker: 0.7-2.1 s a prefix (decision 0141), none of
it measured by any figure (the grants are made before the timed windows; Kafka's authorizer
answers per request from its ACLs, whether they were made a second or a minute before).

Here each process draws one family (``bench<6 hex>-``); ``prefix`` gives fresh prefixes inside
it (``bench1a2b3c-b<8 hex>.``), and ``apply_topics`` creates a prefix's topics and, the first
time on a stack, grants each service principal its role's rights on the whole family: each of
the role's (resource, operation) pairs on the family's prefix, plus its grants that do not
depend on the topic prefix as they are (``family_grants``). Wider than one prefix's literal
topics (a role may use every topic of the family, the bench's own and nothing else), which the
bench never relies on: the least-privilege grants and their refusals are the security system
tests' (``tests/system/test_kafka_security.py``, ``test_tenant_binding.py``), which still make
them per prefix through ``topics.apply``. Without scram the grants are nothing to do.
"""

from __future__ import annotations

import uuid
from typing import Final

from infra import principals, topics
from infra.principals import (
    PREFIXED,
    ROLE_UPSTREAM,
    SERVICE_PRINCIPALS,
    Broker,
    Grant,
    PrincipalSpec,
)
from kafka_adapter.admin import ADMIN_REQUEST_TIMEOUT_S
from kafka_adapter.security import is_scram
from streamledger.settings import Settings

FAMILY: Final = f"bench{uuid.uuid4().hex[:6]}-"
_granted: set[tuple[str, str]] = set()  # (bootstrap, family) granted by this process


def prefix(letter: str) -> str:
    """A fresh topic prefix of this process's family; ``letter`` says which suite made it."""
    return f"{FAMILY}{letter}{uuid.uuid4().hex[:8]}."


def family_of(topic_prefix: str) -> str | None:
    return FAMILY if topic_prefix.startswith(FAMILY) else None


def family_grants(spec: PrincipalSpec, family: str) -> tuple[Grant, ...]:
    """``spec``'s rights on every prefix of ``family``: each grant ``principals.grants_for``
    makes on a prefix, with its name starting at the prefix, becomes the same operation on the
    family's names (prefixed); the others stay as they are."""
    grants: dict[Grant, None] = {}
    for grant in principals.grants_for(spec, family):
        if grant.name.startswith(family):
            grants[Grant(grant.resource, family, PREFIXED, grant.operation)] = None
        else:
            grants[grant] = None
    return tuple(grants)


def grant_family(settings: Settings, family: str) -> None:
    """The service principals' credentials and their ``family_grants``, returning once every
    broker holds them (as ``principals.create`` does)."""
    cluster = principals.cluster_of(settings)
    for name, role in SERVICE_PRINCIPALS.items():
        spec = PrincipalSpec(name, role, read_replies=role == ROLE_UPSTREAM)
        grants = family_grants(spec, family)
        principals.create_credentials(cluster, settings, name)
        futures = cluster.client.create_acls(principals.acl_bindings(name, grants))
        principals.wait_all(futures, f"creating the ACLs of {name}", ADMIN_REQUEST_TIMEOUT_S)
        wanted = set(grants)

        def holds(broker: Broker, name: str = name, wanted: set[Grant] = wanted) -> bool:
            return wanted <= principals.held_grants(cluster, broker, name)

        principals.wait_every_broker(
            cluster,
            f"creating the ACLs of {name}",
            holds,
            timeout_s=principals.CHANGE_VISIBLE_TIMEOUT_S,
        )


def apply_topics(settings: Settings) -> None:
    """``topics.apply`` for a bench prefix: the topics, and under scram the family's grants
    the first time (a prefix outside the family is granted by ``topics.apply`` as always)."""
    family = family_of(settings.topic_prefix)
    if family is None or not is_scram(settings):
        topics.apply(settings)
        return
    key = (settings.kafka_bootstrap, family)
    if key not in _granted:
        grant_family(settings, family)
        _granted.add(key)
    topics.apply(settings, grant_services=False)
