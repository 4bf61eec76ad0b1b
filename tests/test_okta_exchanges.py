"""Okta's SCIM 2.0 provisioning traffic, recorded as data in tests/exchanges-okta/, replayed
over real HTTP against ``python app.py serve``.

Entra is the client Proware is built for (tests/test_entra_exchanges.py); Okta is the other
one an admin reaches for, and it speaks differently: it updates users by PUT of the whole
user, deactivates and changes passwords with path-less PATCH values, pushes groups with
``members`` replaces, filtered removes and path-less renames, and pages its imports with
``startIndex``/``count``. Each file is one request of Okta's (developer.okta.com "SCIM 2.0
protocol reference", and the Runscope "Okta SCIM 2.0 SPEC Test") and the answer Okta needs;
the format is tests/exchanges/README.md's, with ``okta:<part>`` refs (tests/exchanges-okta/
README.md). A scenario runs once, in file order, on a fresh server; each file is its own test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.replay import (
    Exchange,
    HttpTransport,
    Played,
    Replay,
    assert_played,
    load_scenarios,
)
from tests.serverproc import HOST, ServerProcess

OKTA_DIR = Path(__file__).parent / "exchanges-okta"
SCENARIOS = load_scenarios(OKTA_DIR)
EXCHANGES = [exchange for exchanges in SCENARIOS.values() for exchange in exchanges]


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[Exchange], Played]]:
    """The replay of an exchange's scenario, run once per scenario on its own server."""
    runs: dict[str, list[Played]] = {}
    servers: list[ServerProcess] = []

    def played(exchange: Exchange) -> Played:
        if exchange.scenario not in runs:
            server = ServerProcess(tmp_path_factory.mktemp(exchange.scenario))
            servers.append(server)
            token = server.create_token("okta")
            server.enable_provisioning()
            server.start()
            transport = HttpTransport(HOST, server.port)
            try:
                runs[exchange.scenario] = list(
                    Replay(transport, token).run(SCENARIOS[exchange.scenario])
                )
            finally:
                transport.close()
        return runs[exchange.scenario][exchange.index]

    yield played
    for server in servers:
        server.kill()


@pytest.mark.parametrize(
    "exchange", [pytest.param(exchange, id=exchange.id) for exchange in EXCHANGES]
)
def test_server_answers_each_recorded_exchange_as_okta_needs(
    exchange: Exchange, replayed: Callable[[Exchange], Played]
) -> None:
    """Replaying the scenario up to this file, the answer matches the recording."""
    assert_played(replayed(exchange))


def test_refs_name_parts_of_oktas_behaviour_only() -> None:
    """An Entra catalogue id here would claim Entra coverage for Okta's traffic."""
    refs = {ref for exchange in EXCHANGES for ref in exchange.refs}
    assert refs and all(ref.startswith("okta:") for ref in refs), sorted(refs)
