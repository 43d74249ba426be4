"""The Hugging Face cache layout, read without huggingface_hub, torch or transformers.

``<cache>/models--org--name/{refs/main, snapshots/<rev>/<file> -> ../../blobs/<etag>}``: where the
cache is, which snapshot ``refs/main`` selects, which files are there and whole.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from core.findings import Finding
from core.registry import ASSETS, ModelFacts

_JSON_PARSE_LIMIT = 4 << 20  # bigger JSON files (gemma's tokenizer.json: 34 MB) only get a truncation check
_SAFETENSORS_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "I16": 2, "U16": 2, "F16": 2,
    "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8, "C64": 8,
}




def default_hf_cache() -> Path:
    """The Hugging Face hub cache, resolved the way huggingface_hub resolves it (without importing it)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def repo_dir(hf_cache: Path, repo_id: str) -> Path:
    """``models--org--name``: where huggingface_hub keeps model ``repo_id`` in the cache ``hf_cache``."""
    return Path(hf_cache) / ("models--" + repo_id.replace("/", "--"))


def fix_for(repo_id: str) -> str:
    """The command that fetches ``repo_id``, from the registry."""
    for asset in ASSETS.values():
        if asset.location == repo_id:
            return asset.fix
    return f"hf download {repo_id}"


def _label(entry: str | tuple[str, ...]) -> str:
    return entry if isinstance(entry, str) else " or ".join(entry)


# --------------------------------------------------------------------------- cache layout


@dataclass
class CacheReport:
    repo_id: str
    repo_dir: Path
    snapshot: Path | None
    present: list[str] = field(default_factory=list)  # the file actually used for each needed entry
    missing: list[str] = field(default_factory=list)
    broken: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    bytes: int = 0
    complete: bool = False

    def problems(self) -> list[str]:
        fix = fix_for(self.repo_id)
        where = str(self.snapshot or self.repo_dir)
        out = []
        if not self.repo_dir.is_dir():
            return [Finding(f"{self.repo_id}: not in the Hugging Face cache", where=str(self.repo_dir),
                            fix=fix).message()]
        if self.missing:
            out.append(Finding(f"{self.repo_id}: files missing from the Hugging Face cache", self.missing,
                               where=where, fix=fix).message())
        for name, reason in self.broken:
            path = self.snapshot / name if self.snapshot else None
            # hf_hub_download trusts a file that is there: a corrupt blob must go before re-fetching.
            this_fix = f"rm {path.resolve()} && {fix}" if path and path.exists() else fix
            out.append(Finding(f"{self.repo_id}: {name} is broken ({reason})", where=where, fix=this_fix).message())
        return out


def safetensors_problem(path: Path) -> str | None:
    """None if the header parses and the file is exactly as long as the header says, else why not."""
    size = path.stat().st_size
    if size < 8:
        return f"{size} bytes, too short for a safetensors header: truncated download"
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n == 0 or 8 + n > size:
            return f"header length {n:,} does not fit in the file's {size:,} bytes: truncated or not safetensors"
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, ValueError) as e:
            return f"header is not valid JSON ({e}): corrupt or not safetensors"
    if not isinstance(header, dict):
        return "header is not a JSON object: corrupt or not safetensors"
    end = 0
    for name, t in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, stop = t["data_offsets"]
            count = 1
            for d in t["shape"]:
                count *= d
            width = _SAFETENSORS_DTYPE_BYTES.get(t["dtype"])
        except (KeyError, TypeError, ValueError):
            return f"header entry {name!r} lacks dtype/shape/data_offsets: corrupt"
        if width is not None and stop - begin != count * width:
            return (f"tensor {name!r} spans {stop - begin:,} bytes but shape {t['shape']} {t['dtype']} "
                    f"needs {count * width:,}")
        end = max(end, stop)
    expected = 8 + n + end
    if size < expected:
        return f"{size:,} bytes but its header says {expected:,}: truncated ({expected - size:,} bytes short)"
    if size > expected:
        return f"{size:,} bytes but its header says {expected:,}: {size - expected:,} unexpected trailing bytes"
    return None


def file_problem(path: Path) -> str | None:
    """Cheap structural check of one snapshot file (follows the symlink): None if it looks whole."""
    if os.path.islink(path) and not path.exists():
        return f"dangling symlink -> {os.readlink(path)} (the blob is gone)"
    size = path.stat().st_size
    if size == 0:
        return "zero-size file"
    name = path.name
    if name.endswith(".safetensors"):
        return safetensors_problem(path)
    if name.endswith(".json"):
        if size <= _JSON_PARSE_LIMIT:
            try:
                json.loads(path.read_bytes())
            except ValueError as e:
                return f"not valid JSON ({e}): truncated or corrupt"
        else:
            with open(path, "rb") as f:
                head = f.read(64).lstrip()
                f.seek(-64, os.SEEK_END)
                tail = f.read().rstrip()
            if not (head.startswith(b"{") and tail.endswith(b"}")):
                return "does not end with '}': truncated JSON"
    if name.endswith(".bin"):
        with open(path, "rb") as f:
            magic = f.read(2)
        # torch.save writes a zip; a zip whose central directory is gone was cut short. (Legacy
        # pickle checkpoints do not start with PK and are left to the loader.)
        if magic == b"PK" and not zipfile.is_zipfile(path):
            return "torch zip archive without its central directory: truncated download"
    return None


def _read_ref(rdir: Path, ref: str = "main") -> tuple[Path | None, str | None]:
    """(snapshot dir, problem) for refs/<ref>."""
    ref_file = rdir / "refs" / ref
    snaps = sorted(p.name for p in (rdir / "snapshots").glob("*")) if (rdir / "snapshots").is_dir() else []
    if not ref_file.is_file():
        if not snaps:
            return None, None
        return None, (f"refs/{ref} is missing although snapshots exist ({', '.join(s[:12] for s in snaps)}): "
                      "offline loading resolves 'main' through it")
    commit = ref_file.read_text().strip()
    snap = rdir / "snapshots" / commit
    if not snap.is_dir():
        return None, f"refs/{ref} names commit {commit[:12]} but snapshots/{commit[:12]}… does not exist"
    return snap, None


def cache_report(facts: ModelFacts, hf_cache: Path, check_files: bool = True) -> CacheReport:
    """Which snapshot ``refs/main`` selects and which of ``facts.files`` are present, missing or broken.

    For "one of these" entries the first alternative that exists is the one the library will load
    (open_clip tries ``open_clip_model.safetensors`` first and does not fall back when it is corrupt).
    ``check_files=False`` skips ``file_problem``: a file that is there counts as present, as it does for
    huggingface_hub, which never downloads a file again that the cache already holds.
    """
    rdir = repo_dir(hf_cache, facts.repo_id)
    report = CacheReport(facts.repo_id, rdir, None)
    if not rdir.is_dir():
        report.missing = [_label(e) for e in facts.files]
        return report
    snap, problem = _read_ref(rdir)
    if problem:
        report.broken.append(("refs/main", problem))
        return report
    if snap is None:
        report.missing = [_label(e) for e in facts.files]
        return report
    report.snapshot = snap
    for entry in facts.files:
        alternatives = (entry,) if isinstance(entry, str) else entry
        chosen = next((a for a in alternatives if (snap / a).exists()), None)
        if chosen is None:
            dangling = [a for a in alternatives if os.path.islink(snap / a)]
            if dangling:
                report.broken.append((dangling[0], file_problem(snap / dangling[0]) or "dangling symlink"))
            else:
                report.missing.append(_label(entry))
            continue
        path = snap / chosen
        problem = file_problem(path) if check_files else None
        if problem:
            report.broken.append((chosen, problem))
        else:
            report.present.append(chosen)
            report.bytes += path.stat().st_size
    report.complete = not report.missing and not report.broken
    return report


