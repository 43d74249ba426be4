"""A world = where the assets live and what they are expected to be.

The real world takes its facts from the registry; the tiny world (``checks.tiny``) brings its
own small facts for the same assets. Checks only ever ask the world.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path

from preflight_core import registry
from preflight_core.hf_cache import default_hf_cache, repo_dir
from preflight_core.registry import ASSETS, Asset, AssetKind


@dataclass(frozen=True)
class World:
    data_root: Path
    hf_cache: Path = field(default_factory=default_hf_cache)
    facts: dict[str, object] = field(default_factory=lambda: {n: a.facts for n, a in ASSETS.items()})
    tiny: bool = False
    # open_clip model configs that replace the built-in ones (tiny world: tiny ViTs under the real names).
    open_clip_config_dir: Path | None = None

    def path(self, asset: Asset | str) -> Path:
        asset = ASSETS[asset] if isinstance(asset, str) else asset
        if asset.kind is AssetKind.DATA:
            return self.data_root / asset.location
        if asset.kind is AssetKind.MODEL:
            return repo_dir(self.hf_cache, asset.location)
        return Path(asset.location)

    def facts_for(self, asset: Asset | str):
        name = asset if isinstance(asset, str) else asset.name
        return self.facts[name]

    def to_json(self) -> str:
        """The world for another process (xdist workers, pytester runs); facts keep their types."""
        return json.dumps({
            "data_root": str(self.data_root),
            "hf_cache": str(self.hf_cache),
            "tiny": self.tiny,
            "open_clip_config_dir": str(self.open_clip_config_dir) if self.open_clip_config_dir else None,
            "facts": {n: {"type": type(f).__name__, **asdict(f)} for n, f in self.facts.items()
                      if is_dataclass(f) and not isinstance(f, type)},
        }, indent=1, default=sorted)

    @classmethod
    def from_json(cls, text: str) -> World:
        raw = json.loads(text)
        facts: dict[str, object] = {n: a.facts for n, a in ASSETS.items()}
        for name, f in raw["facts"].items():
            kind = getattr(registry, f.pop("type"))
            for fld in fields(kind):  # JSON turned tuples, sets and tuple-valued dicts into lists
                value = f.get(fld.name)
                if isinstance(value, list):
                    f[fld.name] = frozenset(value) if "frozenset" in str(fld.type) else tuple(
                        tuple(v) if isinstance(v, list) else v for v in value)
                elif isinstance(value, dict):
                    f[fld.name] = {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
            facts[name] = kind(**f)
        config_dir = raw["open_clip_config_dir"]
        return cls(data_root=Path(raw["data_root"]), hf_cache=Path(raw["hf_cache"]), facts=facts,
                   tiny=raw["tiny"], open_clip_config_dir=Path(config_dir) if config_dir else None)
