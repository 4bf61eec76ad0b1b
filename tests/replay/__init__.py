"""Replay recorded Entra exchanges (``tests/exchanges/``) through any HTTP transport.

Helpers, not tests. ``test_entra_exchanges.py`` replays every scenario through the Flask test
client, ``test_waitress_e2e.py`` replays the lifecycle through http.client against the real
server; both read the same files. Adding a quirk adds a file, not code.

- :mod:`.exchange`: the file format and loader (``tests/exchanges/README.md`` for authors);
- :mod:`.transport`: the Flask test client and http.client transports;
- :mod:`.session`: a scenario's run, with placeholders and captures;
- :mod:`.check`: partial matching and the rules every answer obeys.
"""

from tests.replay.check import assert_played, mismatches, problems
from tests.replay.exchange import EXCHANGES_DIR, Exchange, ExchangeFormatError, load_scenarios
from tests.replay.session import Played, Replay, render
from tests.replay.transport import FlaskTransport, HttpTransport, Reply, Transport

__all__ = [
    "EXCHANGES_DIR",
    "Exchange",
    "ExchangeFormatError",
    "FlaskTransport",
    "HttpTransport",
    "Played",
    "Replay",
    "Reply",
    "Transport",
    "assert_played",
    "load_scenarios",
    "mismatches",
    "problems",
    "render",
]
