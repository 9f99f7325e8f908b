"""Where the API's reads go with a hot standby (api/read_routing.py, decision 0037): pure parts."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from api.read_routing import (
    UNKNOWN_STALENESS_S,
    PrimaryPositions,
    Route,
    StandbyView,
    choose_route,
    parse_read_from,
)
from api.settings import build_api_settings
from streamledger.errors import SettingError
from streamledger.settings import Settings

FRESH = StandbyView(reachable=True, in_recovery=True, staleness_s=0.4)
STALE = StandbyView(reachable=True, in_recovery=True, staleness_s=9.0)
DOWN = StandbyView(reachable=False, in_recovery=True, staleness_s=UNKNOWN_STALENESS_S)
PROMOTED = StandbyView(reachable=True, in_recovery=False, staleness_s=0.0)


@pytest.mark.parametrize(
    ("read_from", "view", "route"),
    [
        ("primary", FRESH, Route.PRIMARY),
        ("standby", FRESH, Route.STANDBY),
        ("standby", STALE, Route.UNAVAILABLE),
        ("standby", DOWN, Route.UNAVAILABLE),
        ("standby", None, Route.UNAVAILABLE),  # not looked yet
        ("standby", PROMOTED, Route.PRIMARY),
        ("standby-with-fallback", FRESH, Route.STANDBY),
        ("standby-with-fallback", STALE, Route.PRIMARY),
        ("standby-with-fallback", DOWN, Route.PRIMARY),
    ],
)
def test_the_route_follows_the_mode_and_the_standby_s_staleness(read_from, view, route):
    assert choose_route(read_from, view, staleness_max_s=5.0) is route


def test_the_bound_is_inclusive():
    view = StandbyView(reachable=True, in_recovery=True, staleness_s=5.0)
    assert choose_route("standby", view, staleness_max_s=5.0) is Route.STANDBY


def test_staleness_is_the_time_since_the_primary_was_at_a_replayed_position():
    behind, caught_up = PrimaryPositions(), PrimaryPositions()
    for at_s, position in [(0.0, 100), (1.0, 200), (2.0, 300), (3.0, 400)]:
        behind.saw_primary(at_s, position)
        caught_up.saw_primary(at_s, position)
    assert caught_up.staleness_s(3.0, replayed=400) == 0.0
    assert behind.staleness_s(3.5, replayed=250) == pytest.approx(2.5)  # has what was at 1.0


def test_staleness_never_goes_back_and_grows_while_the_primary_is_gone():
    positions = PrimaryPositions()
    positions.saw_primary(0.0, 100)
    assert positions.staleness_s(0.0, replayed=100) == 0.0
    assert positions.staleness_s(4.0, replayed=100) == pytest.approx(4.0)  # no newer primary look
    assert positions.staleness_s(5.0, replayed=50) == pytest.approx(5.0)


def test_a_standby_never_known_complete_is_infinitely_stale():
    positions = PrimaryPositions()
    positions.saw_primary(0.0, 500)
    assert math.isinf(positions.staleness_s(1.0, replayed=10))


def test_a_new_primary_forgets_the_old_positions():
    positions = PrimaryPositions(kept_max=4)
    positions.saw_primary(0.0, 900)
    positions.saw_primary(1.0, 10)  # a restored or promoted primary, positions restart lower
    assert positions.staleness_s(1.0, replayed=10) == 0.0


def test_read_from_is_one_of_three_words():
    assert parse_read_from(" standby-with-fallback ") == "standby-with-fallback"
    with pytest.raises(ValueError, match="expected one of primary, standby"):
        parse_read_from("replica")


def test_standby_reads_need_a_standby():
    local = Settings(home=Path("/srv"), postgres_port=36432)
    with pytest.raises(SettingError, match="read_from"):
        build_api_settings(local, read_from="standby")
    assert build_api_settings(local).read_from == "primary"


def test_the_local_standby_is_read_with_the_api_role():
    local = Settings(home=Path("/srv"), postgres_port=36432, postgres_standby_port=36433)
    api = build_api_settings(local, read_from="standby-with-fallback")
    parts = conninfo_to_dict(api.standby_reader_dsn)
    assert (parts["port"], parts["user"]) == ("36433", "streamledger_api")
    assert api.standby_staleness_max_s == 5.0
