"""Which Python packages and caches are in use, and whether the versions fit — without importing torch.

``environment_summary`` and ``environment_problems`` read package metadata only (fast, and safe
in a broken environment); ``torch_pair_problem`` imports torch and torchvision, which is the only
way to see that their compiled operators do not match.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import os
import re
import sys
from pathlib import Path

from preflight_core.commands import shell
from preflight_core.findings import Finding, Fix
from preflight_core.hf_cache import default_hf_cache
from preflight_core.redact import redact

# display name -> distribution name
PACKAGES = {
    "torch": "torch",
    "torchvision": "torchvision",
    "transformers": "transformers",
    "open_clip": "open_clip_torch",
    "huggingface_hub": "huggingface_hub",
    "safetensors": "safetensors",
    "tokenizers": "tokenizers",
    "pillow": "pillow",
    "kagglehub": "kagglehub",
}
REQUIRED = ("torch", "torchvision", "transformers", "open_clip", "huggingface_hub", "safetensors", "pillow")
FIX = "pip install -r requirements.txt"


def version_of(display: str) -> str | None:
    try:
        return md.version(PACKAGES.get(display, display))
    except md.PackageNotFoundError:
        return None


def _release(version: str) -> tuple[int, ...]:
    """(2, 14, 1) from '2.14.1+cu130' or '5.0.0rc1'."""
    return tuple(int(p) for p in re.findall(r"\d+", version.split("+")[0])[:3])


def _local(version: str) -> str:
    return version.partition("+")[2]


def torch_cuda_build() -> str | None:
    """torch.version.cuda, read from torch/version.py without importing torch; None for CPU builds."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "version.py"
    try:
        m = re.search(r"^cuda(?:\s*:[^=]*)?=\s*['\"]([^'\"]+)['\"]", path.read_text(), re.M)
    except OSError:
        return None
    return m.group(1) if m else None


def _env_url(name: str) -> str | None:
    """An environment variable holding a URL, without credentials (mirrors can carry them)."""
    value = os.environ.get(name)
    return redact(value) if value else value


def environment_summary() -> dict[str, object]:
    """Versions, CUDA build and caches, for the report header and --report-json. Never holds secrets."""
    env = os.environ
    return {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        **{name: version_of(name) for name in PACKAGES},
        "torch_cuda_build": torch_cuda_build(),
        "hf_hub_cache": str(default_hf_cache()),
        "hf_endpoint": _env_url("HF_ENDPOINT"),
        "hf_hub_offline": env.get("HF_HUB_OFFLINE"),
        "kagglehub_cache": env.get("KAGGLEHUB_CACHE") or str(Path.home() / ".cache" / "kagglehub"),
        "cuda_visible_devices": env.get("CUDA_VISIBLE_DEVICES"),
        "preflight_mirror": _env_url("PREFLIGHT_MIRROR"),
    }


def environment_problems() -> list[Finding]:
    """Version problems visible from package metadata alone, each with its fix."""
    problems = []
    v = {name: version_of(name) for name in PACKAGES}
    for name in REQUIRED:
        if v[name] is None:
            problems.append(Finding(f"{PACKAGES[name]} is not installed", where=sys.executable, fix=Fix.run(FIX)))
    if v["transformers"] and _release(v["transformers"]) < (4, 50):
        problems.append(Finding(f"transformers {v['transformers']} is too old for SigLIP2 (needs >= 4.50)",
                                fix=Fix.run(shell("pip", "install", "-U", "transformers>=4.50"))))
    if v["open_clip"] and _release(v["open_clip"])[:1] != (3,):
        problems.append(Finding(f"open_clip_torch {v['open_clip']}: preflight expects 3.x (pretrained='openai' from "
                                "the Hugging Face Hub)", fix=Fix.run(shell("pip", "install", "open_clip_torch>=3,<4"))))
    if v["torch"] and v["torchvision"]:
        t, tv = _release(v["torch"]), _release(v["torchvision"])
        # torchvision 0.(m+15) goes with torch 2.m (0.15 with 2.0, …, 0.29 with 2.14)
        if len(t) >= 2 and len(tv) >= 2 and t[0] == 2 and (tv[0], tv[1]) != (0, t[1] + 15):
            pair = shell("pip", "install", f"torch=={v['torch'].split('+')[0]}", f"torchvision==0.{t[1] + 15}.*")
            problems.append(Finding(f"torch {v['torch']} and torchvision {v['torchvision']} are not a pair (torch "
                                    f"2.{t[1]} needs torchvision 0.{t[1] + 15})",
                                    fix=Fix(f"{pair} from the same index")))
        lt, ltv = _local(v["torch"]), _local(v["torchvision"])
        if lt and ltv and lt != ltv:
            problems.append(Finding(f"torch ({lt}) and torchvision ({ltv}) are built for different CUDA versions",
                                    fix=Fix("reinstall both from the same --index-url")))
    return problems


def torch_pair_problem() -> Finding | None:
    """Import torch and torchvision and run a torchvision C++ op: None if they work together."""
    try:
        import torch
        import torchvision  # noqa: F401  (its import registers the C++ operators)
        from torchvision.ops import nms

        nms(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([1.0]), 0.5)
    except Exception as e:  # ImportError, RuntimeError "operator torchvision::nms does not exist", …
        return Finding(f"torch and torchvision do not work together ({type(e).__name__}: {e}) — torch "
                       f"{version_of('torch')}, torchvision {version_of('torchvision')}",
                       fix=Fix("reinstall both from the same index, e.g. pip install --force-reinstall torch "
                               "torchvision"))
    return None
