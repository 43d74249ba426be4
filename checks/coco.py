"""COCO val2017: the folder (usually a symlink into the kagglehub cache) and its 5,000 images."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from checks.scan import FileEntry, is_harmless, scan_tree, shown
from preflight_core.findings import Finding
from preflight_core.registry import CocoFacts

if TYPE_CHECKING:
    from preflight_core.verify_cache import VerifyCache


@dataclass
class CocoTree:
    root: Path
    files: list[FileEntry]
    facts: CocoFacts
    unwalkable: list[str] = field(default_factory=list)  # "rel (why)": loops, folders that cannot be listed
    notes: list[str] = field(default_factory=list)  # the verify cache's warnings

    def name_pattern(self) -> re.Pattern:
        return re.compile(rf"\d{{{self.facts.digits}}}\.jpg")

    @property
    def images(self) -> list[FileEntry]:
        pattern = self.name_pattern()
        return [f for f in self.files if "/" not in f.rel and pattern.fullmatch(f.name)]


def scan_coco(root: Path, facts: CocoFacts, cache: VerifyCache | None = None) -> CocoTree:
    scan = scan_tree(root, cache)
    return CocoTree(root, [f for f in scan.files if not is_harmless(f.name)], facts, scan.unwalkable, scan.notes)


def check_count(tree: CocoTree, fix: str) -> list[Finding]:
    n = len(tree.images)
    if n == tree.facts.n_images:
        return []
    return [Finding(f"{n:,} images named %0{tree.facts.digits}d.jpg, expected {tree.facts.n_images:,}",
                    where=shown(str(tree.root)), fix=fix)]


def check_names(tree: CocoTree, fix: str) -> list[Finding]:
    good = {f.rel for f in tree.images}
    stray = [f.shown for f in tree.files if f.rel not in good]
    if not stray:
        return []
    return [Finding(f"files not named %0{tree.facts.digits}d.jpg directly in the folder", stray,
                    total=len(tree.files), where=shown(str(tree.root)), fix=fix)]
