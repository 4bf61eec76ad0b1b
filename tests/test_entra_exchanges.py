"""Entra's traffic, recorded as data in tests/exchanges/, replayed against the app.

Each JSON file is one request and the answer Entra needs (format: tests/exchanges/README.md).
A scenario directory is replayed once, in file order, on a fresh app and data directory;
each file is then its own test, so a failure names the exchange that broke.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from app import create_app
from server.config import Settings, StorageSettings
from tests.replay import (
    EXCHANGES_DIR,
    Exchange,
    ExchangeFormatError,
    FlaskTransport,
    Played,
    Replay,
    assert_played,
    load_scenarios,
    mismatches,
    render,
)
from tests.replay.exchange import load_exchange
from tests.replay.session import UnresolvedPlaceholder

SCENARIOS = load_scenarios()
EXCHANGES = [exchange for exchanges in SCENARIOS.values() for exchange in exchanges]

# Every catalogue entry (A0-A20) and quirk (Q1-Q26) of /work/shared/entra-provisioning.md.
CATALOGUE = [f"A{n}" for n in range(21)] + [f"Q{n}" for n in range(1, 27)]

# Exchanges the server does not answer as recorded yet: id -> what is wrong. Temporary: each
# entry is a bug to fix in the service or API layer, and strict=True fails the run as soon
# as it is fixed, so the entry cannot outlive the bug.
KNOWN_BUGS: dict[str, str] = {}


def _param(exchange: Exchange):
    marks = []
    if exchange.id in KNOWN_BUGS:
        marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[exchange.id]))
    return pytest.param(exchange, id=exchange.id, marks=marks)


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Exchange], Played]:
    """The replay of an exchange's scenario, run once per scenario on its own fresh app.

    Exchanges build on each other (ids captured from earlier answers), so a scenario runs as a
    whole the first time one of its exchanges is asked for; the tests then check one answer each.
    """
    runs: dict[str, list[Played]] = {}

    def played(exchange: Exchange) -> Played:
        if exchange.scenario not in runs:
            data = tmp_path_factory.mktemp(exchange.scenario)
            runs[exchange.scenario] = _replay(SCENARIOS[exchange.scenario], data)
        return runs[exchange.scenario][exchange.index]

    return played


def _replay(exchanges: list[Exchange], data: Path) -> list[Played]:
    """Every exchange of a scenario, in order, against a new app with one read-write token."""
    app = create_app(Settings(storage=StorageSettings(path=data), source="test"))
    app.config["TESTING"] = True
    services = app.extensions["proware"]
    try:
        secret, _ = services.tokens.create("entra")
        services.switch.set(True)
        return list(Replay(FlaskTransport(app.test_client()), secret).run(exchanges))
    finally:
        services.repository.close()


@pytest.mark.parametrize("exchange", [_param(exchange) for exchange in EXCHANGES])
def test_server_answers_each_recorded_exchange_as_entra_needs(
    exchange: Exchange, replayed: Callable[[Exchange], Played]
) -> None:
    """Replaying the scenario up to this file, the answer matches the recording."""
    assert_played(replayed(exchange))


def _not_applicable() -> dict[str, str]:
    """The README's "Not applicable" list: ``- **Q20** why`` lines, id -> why."""
    text = (EXCHANGES_DIR / "README.md").read_text(encoding="utf-8")
    section = text.split("## Not applicable", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^- \*\*([AQ]\d+)\*\*:? (.+)$", section, flags=re.MULTILINE))


def test_every_catalogue_entry_and_quirk_is_replayed_or_explained() -> None:
    """Each A0-A20 and Q1-Q26 is in some exchange's refs, or listed as not applicable."""
    covered = {ref.split(".")[0] for exchange in EXCHANGES for ref in exchange.refs}
    explained = set(_not_applicable())
    assert [entry for entry in CATALOGUE if entry not in covered | explained] == []


def test_refs_and_not_applicable_entries_name_real_catalogue_ids() -> None:
    """A typo like "Q62" would count as coverage of nothing."""
    refs = {ref.split(".")[0] for exchange in EXCHANGES for ref in exchange.refs}
    assert sorted(refs - set(CATALOGUE)) == []
    assert sorted(set(_not_applicable()) - set(CATALOGUE)) == []


def test_known_bugs_name_existing_exchanges() -> None:
    """An xfail entry for a renamed file would silently guard nothing."""
    assert sorted(set(KNOWN_BUGS) - {exchange.id for exchange in EXCHANGES}) == []


# -- the replay itself: a matcher that matched everything would make every file pass --------


@pytest.mark.parametrize(
    ("expected", "actual", "matches"),
    [
        pytest.param({"a": 1}, {"a": 1, "b": 2}, True, id="object-extra-keys-ignored"),
        pytest.param({"a": 1, "c": 3}, {"a": 1}, False, id="object-missing-key"),
        pytest.param(False, "False", False, id="Q15-string-False-is-not-false"),
        pytest.param(True, 1, False, id="one-is-not-true"),
        pytest.param(1, 1.0, True, id="number-equals-number"),
        pytest.param([{}], [{"a": 1}, {"b": 2}], False, id="list-length-counts"),
        pytest.param([{"a": 1}, {}], [{"a": 1}, {"b": 2}], True, id="list-elements-partial"),
        pytest.param({"$contains": [{"n": 2}]}, [{"n": 1}, {"n": 2}], True, id="contains-any"),
        pytest.param({"$contains": [{"n": 3}]}, [{"n": 1}, {"n": 2}], False, id="contains-none"),
        pytest.param(
            {"$contains": [{"n": 1}, {"n": 1}]}, [{"n": 1}], False, id="contains-distinct"
        ),
    ],
)
def test_matcher_is_partial_for_objects_and_strict_for_lengths_and_json_types(
    expected: object, actual: object, matches: bool
) -> None:
    assert (mismatches(expected, actual, "response") == []) is matches


def test_placeholders_take_captured_values_and_leave_json_strings_alone() -> None:
    """Types survive a whole-string placeholder; JSON in a string (Q16) is not a placeholder."""
    variables = {"base": "http://x/scim/v2", "user": {"id": "u1", "n": [3]}}
    assert render("{base}/Users/{user.id}", variables) == "http://x/scim/v2/Users/u1"
    assert render({"count": "{user.n.0}"}, variables) == {"count": 3}
    assert render('{"id":"{user.id}"}', variables) == '{"id":"u1"}'
    with pytest.raises(UnresolvedPlaceholder, match="nothing was captured as 'group'"):
        render("/Groups/{group.id}", variables)


def test_loader_rejects_a_misspelt_key(tmp_path: Path) -> None:
    """A "respone" key would otherwise check nothing and pass."""
    exchange = tmp_path / "scenario" / "01-x.json"
    exchange.parent.mkdir()
    exchange.write_text(
        '{"description": "d", "refs": ["A1"], "method": "GET", "path": "/Users", '
        '"status": 200, "respone": {}}'
    )
    with pytest.raises(ExchangeFormatError, match="unknown keys respone"):
        load_exchange(exchange)
