"""Where one request's CPU goes: a cProfile run split by layer (``app_micro --profile``).

Every function's own time (cProfile's ``tottime``) is charged to the layer its source file
belongs to: Flask/werkzeug, auth (bearer token, control file), marshmallow (and the SCIM
schemas built on it), the SCIM service, projection and presentation, JSON, the store, the
audit log and connection status, the app's own glue. Time in a builtin or in a standard
library function (``os.fsync``, ``re``, ``datetime``) belongs to whoever called it: it is
split among its callers in proportion to the time each call edge took, so an fsync counts
for the store and a ``re.match`` in the filter parser for the service.

The profiler's own overhead inflates short functions, so the split says where the time
goes, and the unprofiled run says how much there is.
"""

from __future__ import annotations

import cProfile
import pstats
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Layers in the order the table shows them; each with the path fragments that belong to it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("flask", ("/flask/", "/werkzeug/", "/jinja2/", "/itsdangerous/", "/blinker/", "/markupsafe/")),
    ("auth", ("/scim/api/auth.py", "/scim/tokens.py")),
    ("marshmallow", ("/marshmallow/", "/scim/schemas/")),
    (
        "service",
        (
            "/scim/service.py",
            "/scim/filter",
            "/scim/patch",
            "/scim/paths.py",
            "/scim/pagination.py",
            "/scim/membership.py",
            "/scim/activity.py",
            "/scim/definitions.py",
            "/scim/errors.py",
        ),
    ),
    ("projection", ("/scim/projection.py", "/scim/presentation.py")),
    ("json", ("/json/", "orjson")),
    ("store", ("/storage/",)),
    ("driver", ("/psycopg/", "/psycopg_pool/")),
    ("audit", ("/admin/audit.py", "/admin/connection.py")),
    ("glue", ("/app.py", "/scim/api/", "/admin/", "/server/")),
]
COLUMNS = [name for name, _ in LAYERS] + ["other"]
# Shared helpers whose time belongs to their caller, like a builtin's: the control file is
# read by the token check (auth) and its fsync used by the journal (store).
INHERITED = ("/storage/controlfile.py",)

Function = tuple[str, int, str]  # pstats' key: (file, line, name)


def layer_of(function: Function) -> str | None:
    """The layer whose code ``function`` is, or None for a builtin or the standard library."""
    filename = function[0]
    if any(fragment in filename for fragment in INHERITED):
        return None
    for name, fragments in LAYERS:
        if any(fragment in filename for fragment in fragments):
            return name
    if "site-packages" in filename:
        return "other"
    return None


def split(stats: pstats.Stats) -> dict[str, float]:
    """Seconds of own time per layer, builtins and the standard library charged to callers."""
    table = stats.stats  # type: ignore[attr-defined]
    charged: dict[str, float] = defaultdict(float)
    shares: dict[Function, dict[str, float]] = {}

    def share(function: Function, seen: frozenset[Function]) -> dict[str, float]:
        """The fractions of ``function``'s time that each layer is charged."""
        if function in shares:
            return shares[function]
        own = layer_of(function)
        if own is not None:
            result = {own: 1.0}
        else:
            callers = table.get(function, (0, 0, 0.0, 0.0, {}))[4]
            # Each call edge's cumulative time: how much of ``function`` each caller caused.
            weights = {caller: edge[3] for caller, edge in callers.items()}
            total = sum(weights.values())
            result = defaultdict(float)
            if not total or function in seen:
                result["other"] = 1.0
            else:
                for caller, weight in weights.items():
                    for name, fraction in share(caller, seen | {function}).items():
                        result[name] += fraction * weight / total
        shares[function] = dict(result)
        return shares[function]

    for function, (_, _, tottime, _, _) in table.items():
        for name, fraction in share(function, frozenset()).items():
            charged[name] += tottime * fraction
    return dict(charged)


def profile(
    run: Callable[[], object], timer: Callable[[], float] | None = None
) -> dict[str, float]:
    """Run ``run`` under cProfile; seconds per layer.

    :param timer: what the profiler counts (default wall time; ``time.process_time`` for a
        request that waits on a database, so that the waiting does not count as its CPU).
    """
    profiler = cProfile.Profile(timer) if timer is not None else cProfile.Profile()
    profiler.enable()
    try:
        run()
    finally:
        profiler.disable()
    return split(pstats.Stats(profiler))


def header() -> str:
    """The table's column titles."""
    return f"  {'request':<26}{'CPU/req':>9}  " + "".join(f"{name:>12}" for name in COLUMNS)


def row(label: str, cpu_ms: float, seconds: dict[str, float]) -> str:
    """One request kind: its unprofiled CPU per request, then each layer's share."""
    total = sum(seconds.values()) or 1.0
    shares = "".join(f"{seconds.get(name, 0.0) / total:>11.0%} " for name in COLUMNS)
    return f"  {label:<26}{cpu_ms:>7.3f}ms  {shares}"
