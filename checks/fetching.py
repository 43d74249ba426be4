"""--fetch-missing: the one module of checks/ that imports fetchers."""

from __future__ import annotations

from checks.session import Checkup
from preflight_core.registry import ASSETS


def fetch_missing(checkup: Checkup) -> dict:
    """Fetch what the selection touches and lacks; asset -> fetchers.plan.FetchOutcome."""
    from fetchers.plan import fetch_missing as run

    assets = [a for a in ASSETS.values() if checkup.selection.touches(a)]
    return run(checkup.world, assets, settings={k: r.value for k, r in checkup.settings.items()})
