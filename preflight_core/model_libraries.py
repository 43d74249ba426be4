"""One adapter per model library, behind one protocol: what the library looks for in the HF cache.

The fetcher (``fetchers.hub``) asks the adapter which repo and files the library's own loader will
read (open_clip resolves ``pretrained="openai"`` through its pretrained table), how the library names
itself to the Hub, and what a fetch hands back. No code outside this module branches on a library's
name. (Loading and the forward pass, which need torch, have their adapters in ``checks.models``.)
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Protocol

from preflight_core.findings import Fix
from preflight_core.registry import Library, ModelFacts


class LibraryMismatch(Exception):
    """The installed library would not load what the registry pins; ``message`` says why, ``fix`` what to do."""

    def __init__(self, message: str, fix: Fix) -> None:
        super().__init__(message)
        self.message, self.fix = message, fix


class ModelLibrary(Protocol):
    library: Library
    needs_text: str  # what the needed files are, for a message: "which the model needs"

    def loaded_files(self, facts: ModelFacts) -> ModelFacts:
        """``facts`` with the repo and the files this library's loader will read, first choice first."""
        ...

    def client_info(self) -> dict[str, str]:
        """``library_name`` / ``library_version`` for the Hub's requests (empty: huggingface_hub's own)."""
        ...

    def fetched_path(self, snapshot: Path, present: dict[str, Path]) -> Path:
        """What a fetch hands back: the snapshot folder, or the one file the library loads."""
        ...


class TransformersLibrary:
    library = Library.TRANSFORMERS
    needs_text = "which the model needs"

    def loaded_files(self, facts: ModelFacts) -> ModelFacts:
        return facts

    def client_info(self) -> dict[str, str]:
        return {}

    def fetched_path(self, snapshot: Path, present: dict[str, Path]) -> Path:
        return snapshot


class OpenClipLibrary:
    library = Library.OPEN_CLIP
    needs_text = "the weights open_clip looks for"

    def loaded_files(self, facts: ModelFacts) -> ModelFacts:
        repo_id, names = _open_clip_weights(facts)
        if facts.weights_file and facts.weights_sha256:
            names = _pinned_first(facts, names)
        return dataclasses.replace(facts, repo_id=repo_id, files=(names,))

    def client_info(self) -> dict[str, str]:
        try:
            import open_clip
        except ImportError:
            return {}
        return {"library_name": "open_clip", "library_version": open_clip.__version__}

    def fetched_path(self, snapshot: Path, present: dict[str, Path]) -> Path:
        return next(iter(present.values()))


LIBRARIES: dict[Library, ModelLibrary] = {Library.TRANSFORMERS: TransformersLibrary(),
                                          Library.OPEN_CLIP: OpenClipLibrary()}


def library_of(facts: ModelFacts) -> ModelLibrary:
    return LIBRARIES[Library(facts.library)]


def _pinned_first(facts: ModelFacts, names: tuple[str, ...]) -> tuple[str, ...]:
    """The pinned weights file, which must be the first file open_clip looks for (else it loads another)."""
    pinned = facts.weights_file
    if pinned not in names:
        raise LibraryMismatch(
            f"open_clip looks for {' then '.join(names)} in {facts.repo_id}, not for the pinned {pinned}.",
            Fix("check weights_file in preflight_core/registry.py and the installed open_clip version."))
    if names[0] != pinned:
        raise LibraryMismatch(
            f"open_clip would load {names[0]} from {facts.repo_id} before the pinned {pinned} "
            "(it reads .safetensors files only when the safetensors package is installed).",
            Fix("pip install safetensors (see requirements.txt), then fetch again.", ("pip install safetensors",)))
    return (pinned,)


def _open_clip_weights(facts: ModelFacts) -> tuple[str, tuple[str, ...]]:
    """(repo, file names in the order open_clip tries them) for ``pretrained="openai"``."""
    alternatives = next((f for f in facts.files if isinstance(f, tuple)), None)
    fallback = alternatives or tuple(f for f in facts.files if isinstance(f, str))
    try:
        import open_clip
        from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME
    except ImportError:  # open_clip absent: the registry's facts say the same thing
        return facts.repo_id, fallback
    name = facts.open_clip_name or ""
    cfg = open_clip.get_pretrained_cfg(name, "openai")
    if not cfg.get("hf_hub"):
        raise LibraryMismatch(
            f"open_clip {open_clip.__version__} knows no 'openai' weights on the Hugging Face Hub for {name!r}, "
            f"so `open_clip.create_model_and_transforms({name!r}, pretrained='openai')` cannot load them.",
            Fix("check open_clip_name in preflight_core/registry.py and the installed open_clip version."))
    repo_id, filename = os.path.split(cfg["hf_hub"])  # "org/repo/" -> no file name: open_clip's default
    filename = filename or HF_WEIGHTS_NAME
    if repo_id != facts.repo_id:
        raise LibraryMismatch(
            f"open_clip {open_clip.__version__} loads {name} 'openai' weights from {repo_id}, the registry says "
            f"{facts.repo_id}.", Fix(f"update repo_id in preflight_core/registry.py to {repo_id}."))
    names = [filename]
    if filename == HF_WEIGHTS_NAME:
        names.insert(0, HF_SAFE_WEIGHTS_NAME)
    elif filename.endswith((".bin", ".pth")):
        names.insert(0, filename[:-4] + ".safetensors")
    try:
        import safetensors  # noqa: F401  (open_clip skips the safetensors file without it)
    except ImportError:
        names = names[-1:]
    return repo_id, tuple(names)
