"""The published weights, not look-alikes (issue 8), the fixes of model rows, and the HF cache location.

- ``preflight_core.hf_cache.weights_identity``: refs/main's weight file must be a symlink to the blob named by the
  pinned sha256, of the pinned size; unit tests on a copy of a tiny HF cache.
- ``test_published_weights`` through pytest (pytester) on tiny worlds: a right-shape impostor fails that
  check alone; a ``.bin``-only CLIP snapshot is unverified; another revision with the published weights
  is a note; every model row carries its revision and weights digest.
- ``preflight_core.hf_cache.fix_for``: one fix for every model message, runnable as printed under HF_HUB_OFFLINE.
- ``preflight_core.hf_cache.default_hf_cache`` against huggingface_hub itself, over a matrix of environments.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from checks.tiny import build_tiny_world
from checks.tiny_models import etag_for, relink_snapshot_file, snapshot_dir, write_tiny_models
from preflight_core.hf_cache import (
    default_hf_cache,
    fix_for,
    hub_offline,
    offline_requested,
    repo_dir,
    weights_identity,
)
from preflight_core.registry import ASSETS
from tests.checkrun import run_checks

pytestmark = pytest.mark.torch  # tiny models are written and loaded with torch


MODELS = ("siglip2_base", "siglip2_so400m", "clip_b32", "clip_l14")
SIGLIP_B, CLIP_B = ASSETS["siglip2_base"].location, ASSETS["clip_b32"].location
SELECT = "siglip2 or clip or env or gpu"


# --------------------------------------------------------------------------- planted faults


def impostor_weights(path: Path, seed: int = 1) -> bytes:
    """Other weights of the same architecture: every float tensor moved a little (same names, shapes, dtypes)."""
    import torch
    from safetensors.torch import load_file, save

    gen = torch.Generator().manual_seed(seed)
    tensors = load_file(path)
    out = {k: v + 0.01 * torch.randn(v.shape, generator=gen, dtype=v.dtype) if v.is_floating_point() else v
           for k, v in tensors.items()}
    return save(out, metadata={"format": "pt"})


def padded_under_the_published_name(hf_cache: Path, repo_id: str, name: str) -> int:
    """Rewrite the published blob with a longer but valid safetensors file (same tensors, more metadata).

    The blob keeps its name (the pinned sha256): loads, runs, passes the structural checks; only its size
    (and, under --deep, its hash) gives it away. Returns the new size.
    """
    from safetensors.torch import load_file, save

    blob = (snapshot_dir(hf_cache, repo_id) / name).resolve()
    data = save(load_file(blob), metadata={"format": "pt", "note": "x" * 1000})
    blob.write_bytes(data)
    return len(data)


def bin_only(hf_cache: Path, repo_id: str) -> None:
    """An older open_clip snapshot: open_clip_pytorch_model.bin (torch.save) and no safetensors file."""
    import torch
    from safetensors.torch import load_file

    snap = snapshot_dir(hf_cache, repo_id)
    link = snap / "open_clip_model.safetensors"
    buf = io.BytesIO()
    torch.save(load_file(link.resolve()), buf)
    link.unlink()
    data = buf.getvalue()
    blob = snap.parent.parent / "blobs" / etag_for("open_clip_pytorch_model.bin", data)
    blob.write_bytes(data)
    (snap / "open_clip_pytorch_model.bin").symlink_to(os.path.relpath(blob, snap))


def move_main_to_another_revision(hf_cache: Path, repo_id: str) -> str:
    """refs/main -> a new commit whose snapshot links the very same blobs (e.g. a README-only commit)."""
    snap = snapshot_dir(hf_cache, repo_id)
    other = "f" * 40
    shutil.copytree(snap, snap.parent / other, symlinks=True)
    (repo_dir(hf_cache, repo_id) / "refs" / "main").write_text(other)
    return other


# --------------------------------------------------------------------------- weights_identity (unit)


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("identity")
    facts = write_tiny_models(root / "hub", root / "configs")
    return root / "hub", facts


@pytest.fixture
def cache(tiny_cache, tmp_path: Path) -> Path:
    dst = tmp_path / "hub"
    shutil.copytree(tiny_cache[0], dst, symlinks=True)
    return dst


@pytest.fixture
def facts(tiny_cache):
    return tiny_cache[1]


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize("name", MODELS)
def test_tiny_models_pin_their_own_weights(tiny_cache, name: str):
    hf_cache, facts = tiny_cache
    f = facts[name]
    snap = snapshot_dir(hf_cache, f.repo_id)
    data = (snap / f.weights_file).read_bytes()
    assert (f.revision, f.weights_size, f.weights_sha256) == (snap.name, len(data), hashlib.sha256(data).hexdigest())
    ident = weights_identity(f, hf_cache)
    assert (ident.status, ident.problem, ident.note) == ("published", None, None)
    assert (ident.revision, ident.weights_sha256, ident.size) == (f.revision, f.weights_sha256, f.weights_size)
    assert "the published weights" in ident.summary() and f.weights_sha256[:12] in ident.summary()


def test_real_pins_on_a_tiny_cache_name_both_digests(tiny_cache, online):
    """The registry's facts (the real pins) against the tiny weights: what a random-weights cache reports."""
    hf_cache, facts = tiny_cache
    real = ASSETS["siglip2_base"].facts
    ident = weights_identity(real, hf_cache)
    tiny_sha = facts["siglip2_base"].weights_sha256
    assert ident.status == "other" and not ident.published
    assert ident.problem.startswith(f"not the published weights of {real.repo_id}: found {tiny_sha[:12]}… (")
    assert "published 612923381c76… (1,500,800,904 B)" in ident.problem
    assert ident.problem.endswith(f"in {ident.snapshot}")
    assert ident.message() == f"{ident.problem} — fix: python -m fetchers --siglip2"
    assert ident.weights_sha256 == tiny_sha  # provenance says what is there


def test_impostor_blob_is_not_published(cache: Path, facts, online):
    f = facts["clip_b32"]
    link = snapshot_dir(cache, f.repo_id) / f.weights_file
    data = impostor_weights(link)
    relink_snapshot_file(cache, f.repo_id, f.weights_file, data)
    ident = weights_identity(f, cache)
    assert ident.status == "other"
    assert f"found {hashlib.sha256(data).hexdigest()[:12]}… ({len(data):,} B)" in ident.problem
    assert f"published {f.weights_sha256[:12]}… ({f.weights_size:,} B)" in ident.problem
    assert ident.message().endswith("fix: python -m fetchers --clip")


def test_published_name_with_the_wrong_size(cache: Path, facts):
    f = facts["siglip2_base"]
    size = padded_under_the_published_name(cache, f.repo_id, f.weights_file)
    ident = weights_identity(f, cache)
    assert ident.status == "other" and ident.weights_sha256 == f.weights_sha256
    assert f"found {f.weights_sha256[:12]}… ({size:,} B), published {f.weights_sha256[:12]}… " \
           f"({f.weights_size:,} B)" in ident.problem
    assert "the published name but not its size" in ident.problem


def test_bin_only_clip_snapshot_is_unverified(cache: Path, facts, online):
    f = facts["clip_l14"]
    bin_only(cache, f.repo_id)
    ident = weights_identity(f, cache)
    assert ident.status == "unverified" and ident.weights_file == "open_clip_pytorch_model.bin"
    assert ident.problem.startswith("unverified: ")
    assert "no open_clip_model.safetensors" in ident.problem and ident.fix.commands == ("python -m fetchers --clip",)
    assert "unverified" in ident.summary()


def test_plain_file_weights_are_unverified_and_the_fix_removes_them(cache: Path, facts, online):
    f = facts["siglip2_base"]
    link = snapshot_dir(cache, f.repo_id) / f.weights_file
    data = link.read_bytes()
    link.unlink()
    link.write_bytes(data)  # a cache written without symlinks: the name of the blob is lost
    ident = weights_identity(f, cache)
    assert ident.status == "unverified" and ident.weights_sha256 is None
    assert ident.fix.commands == (f"rm -- {link}", "python -m fetchers --siglip2")


def test_other_revision_with_the_published_weights_is_a_note(cache: Path, facts):
    f = facts["siglip2_so400m"]
    other = move_main_to_another_revision(cache, f.repo_id)
    ident = weights_identity(f, cache)
    assert ident.published and ident.problem is None and ident.revision == other
    assert f"refs/main is revision {other[:12]}…, not the pinned {f.revision[:12]}…" in ident.note


def test_absent_weights_are_cache_reports_business(cache: Path, facts, tmp_path: Path):
    f = facts["siglip2_base"]
    (snapshot_dir(cache, f.repo_id) / f.weights_file).unlink()
    assert weights_identity(f, cache).status == "absent"
    assert weights_identity(f, tmp_path / "nothing-here").status == "absent"


def test_identity_imports_no_ml_library(tiny_cache):
    code = ("import sys; from pathlib import Path; from preflight_core.hf_cache import weights_identity; "
            "from preflight_core.registry import ASSETS; "
            f"i = weights_identity(ASSETS['clip_b32'].facts, Path({str(tiny_cache[0])!r})); assert i.status == 'other'; "
            "bad = sorted({'torch', 'transformers', 'open_clip', 'huggingface_hub', 'safetensors'} & set(sys.modules)); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], check=True)


# --------------------------------------------------------------------------- fix_for


@pytest.mark.parametrize(("env", "expected"), [
    ({}, "python -m fetchers --siglip2"),
    ({"HF_HUB_OFFLINE": "0"}, "python -m fetchers --siglip2"),
    ({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE=0 python -m fetchers --siglip2"),
    ({"HF_HUB_OFFLINE": "yes"}, "HF_HUB_OFFLINE=0 python -m fetchers --siglip2"),
    ({"TRANSFORMERS_OFFLINE": "1"}, "HF_HUB_OFFLINE=0 python -m fetchers --siglip2"),
])
def test_fix_says_to_turn_offline_mode_off_for_the_fetch(monkeypatch: pytest.MonkeyPatch, online, env, expected):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    fix = fix_for(SIGLIP_B)
    assert (fix.text, fix.commands) == (expected, (expected,))


def test_offline_forced_by_the_checks_is_not_the_users(monkeypatch: pytest.MonkeyPatch, online):
    """Inside hub_offline() HF_HUB_OFFLINE=1 is the checks' own doing: a fix built there must not mention it."""
    with hub_offline():
        assert os.environ["HF_HUB_OFFLINE"] == "1" and not offline_requested()
        assert fix_for(CLIP_B).text == "python -m fetchers --clip"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with hub_offline():
        assert offline_requested() and fix_for(CLIP_B).text == "HF_HUB_OFFLINE=0 python -m fetchers --clip"


def test_offline_fix_command_really_turns_offline_mode_off(tmp_path: Path):
    """The prefix works as printed: huggingface_hub in a shell with HF_HUB_OFFLINE=1 (and TRANSFORMERS_OFFLINE=1)."""
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    code = "from huggingface_hub import constants; print(constants.is_offline_mode())"
    out = subprocess.run(["sh", "-c", f"HF_HUB_OFFLINE=0 {sys.executable} -c '{code}'"], env=env,
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- the HF cache location


HF_VARS = ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME", "MYROOT", "NOPE")
CACHE_ENVS = {
    "nothing set": {},
    "XDG_CACHE_HOME": {"XDG_CACHE_HOME": "/xdg"},
    "XDG_CACHE_HOME with ~": {"XDG_CACHE_HOME": "~/xdg"},
    "HF_HOME over XDG": {"HF_HOME": "/hfhome", "XDG_CACHE_HOME": "/xdg"},
    "HF_HOME with ~": {"HF_HOME": "~/hfhome"},
    "HF_HOME with $VAR": {"HF_HOME": "$MYROOT/hfhome", "MYROOT": "/r"},
    "HF_HOME relative": {"HF_HOME": "rel/hfhome"},
    "HF_HOME empty": {"HF_HOME": ""},
    "legacy HUGGINGFACE_HUB_CACHE over HF_HOME": {"HUGGINGFACE_HUB_CACHE": "/legacy", "HF_HOME": "/hfhome"},
    "legacy with ~": {"HUGGINGFACE_HUB_CACHE": "~/legacy"},
    "legacy with $VAR": {"HUGGINGFACE_HUB_CACHE": "${MYROOT}/legacy", "MYROOT": "/r"},
    "HF_HUB_CACHE over legacy": {"HF_HUB_CACHE": "/new", "HUGGINGFACE_HUB_CACHE": "/legacy", "HF_HOME": "/h"},
    "HF_HUB_CACHE with ~ and $VAR": {"HF_HUB_CACHE": "~/$MYROOT/new", "MYROOT": "r"},
    "HF_HUB_CACHE with an unset $VAR": {"HF_HUB_CACHE": "/x/$NOPE/hub"},
    "HF_HUB_CACHE empty": {"HF_HUB_CACHE": "", "HF_HOME": "/h"},
}


@pytest.mark.parametrize("env", CACHE_ENVS.values(), ids=CACHE_ENVS.keys())
def test_hf_cache_is_where_huggingface_hub_looks(env: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    home = tmp_path / "home"
    home.mkdir()
    # huggingface_hub itself, in a fresh process: its constants are computed at import.
    sub_env = {"PATH": os.environ["PATH"], "HOME": str(home), **env}
    out = subprocess.run([sys.executable, "-c", "from huggingface_hub import constants; print(constants.HF_HUB_CACHE)"],
                         env=sub_env, cwd=tmp_path, capture_output=True, text=True, check=True)
    theirs = Path(out.stdout.removesuffix("\n"))
    for var in HF_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(home))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert default_hf_cache() == theirs, (env, out.stdout)


# --------------------------------------------------------------------------- through pytest (pytester)


def cache_of(world: Path) -> Path:
    return world / "hf" / "hub"


def plant_impostor(world: Path, repo_id: str, name: str) -> bytes:
    data = impostor_weights(snapshot_dir(cache_of(world), repo_id) / name)
    relink_snapshot_file(cache_of(world), repo_id, name, data)
    return data


def test_tiny_world_pins_pass_and_every_model_row_has_provenance(pytester, world):
    run = run_checks(pytester, "-m", SELECT, world=world)
    assert run.ret == 0, run.result.stdout.str()
    outcomes = run.outcomes()
    for name in MODELS:
        assert outcomes[f"test_models.py::test_published_weights[{name}]"] == "passed"
    rows = {a["name"]: a for a in run.report["assets"]}
    for name in MODELS:
        snap = snapshot_dir(cache_of(world), ASSETS[name].location)
        weights = snap / ("model.safetensors" if name.startswith("siglip") else "open_clip_model.safetensors")
        assert rows[name]["status"] == "ready"
        assert rows[name]["revision"] == snap.name
        assert rows[name]["weights_sha256"] == weights.resolve().name
        summary = f"revision {snap.name[:12]}…, {weights.name} {weights.resolve().name[:12]}… ("
        assert any(line.startswith(summary) and line.endswith(": the published weights")
                   for line in rows[name]["info"]), rows[name]["info"]


@pytest.mark.parametrize("selection", [SELECT, f"({SELECT}) and not model"])
@pytest.mark.parametrize(("asset", "name"), [("siglip2_base", "model.safetensors"),
                                             ("clip_b32", "open_clip_model.safetensors")])
def test_right_shape_impostor_fails_only_the_identity_check(pytester, world, selection, asset, name):
    repo = ASSETS[asset].location
    published = snapshot_dir(cache_of(world), repo) / name
    pin = published.resolve().name
    data = plant_impostor(world, repo, name)
    run = run_checks(pytester, "-m", selection, world=world)
    failing = f"test_published_weights[{asset}]"
    assert run.failed() == {f"test_models.py::{failing}"}, run.result.stdout.str()
    message = run.message(failing)
    assert f"not the published weights of {repo}: found {hashlib.sha256(data).hexdigest()[:12]}…" in message
    assert f"published {pin[:12]}…" in message and f"in {published.parent}" in message
    assert run.status(asset) == "broken" and run.ret == 1
    if "not model" not in selection:  # it loads and runs: only the identity gives it away
        outcomes = run.outcomes()
        assert outcomes[f"test_models.py::test_loads_offline_with_the_right_classes[{asset}]"] == "passed"
        assert outcomes[f"test_models.py::test_forward_pass[{asset}]"] == "passed"
    row = next(a for a in run.report["assets"] if a["name"] == asset)
    assert row["weights_sha256"] == hashlib.sha256(data).hexdigest()


def test_published_name_of_the_wrong_size_fails_the_identity_check(pytester, world):
    size = padded_under_the_published_name(cache_of(world), SIGLIP_B, "model.safetensors")
    run = run_checks(pytester, "-m", SELECT, world=world)
    assert run.failed() == {"test_models.py::test_published_weights[siglip2_base]"}, run.result.stdout.str()
    assert f"({size:,} B)" in run.message("test_published_weights[siglip2_base]")
    deep = run_checks(pytester, "-m", "siglip2 and not model", "--deep", world=world)
    assert deep.failed() == {"test_models.py::test_published_weights[siglip2_base]",
                             "test_models.py::test_weight_blobs_match_their_etags[siglip2_base]"}


def test_bin_only_clip_snapshot_is_reported_unverified(pytester, world):
    bin_only(cache_of(world), CLIP_B)
    run = run_checks(pytester, "-m", "clip or env", world=world)
    assert run.failed() == {"test_models.py::test_published_weights[clip_b32]"}, run.result.stdout.str()
    message = run.message("test_published_weights[clip_b32]")
    assert "unverified" in message and "open_clip_pytorch_model.bin" in message
    assert "fix: python -m fetchers --clip" in message
    assert run.status("clip_b32") == "broken" and not run.report["ok"]
    assert run.outcomes()["test_models.py::test_forward_pass[clip_b32]"] == "passed"  # open_clip loads the .bin


def test_other_revision_with_the_published_weights_is_only_a_note(pytester, world):
    other = move_main_to_another_revision(cache_of(world), SIGLIP_B)
    run = run_checks(pytester, "-m", "siglip2 or env", world=world)
    assert run.ret == 0 and run.failed() == set(), run.result.stdout.str()
    row = next(a for a in run.report["assets"] if a["name"] == "siglip2_base")
    assert row["status"] == "ready" and row["revision"] == other
    assert any(f"refs/main is revision {other[:12]}…, not the pinned" in n for n in row["warnings"]), row


def test_hf_hub_offline_fix_says_to_turn_it_off_for_the_fetch(pytester, world, monkeypatch):
    plant_impostor(world, CLIP_B, "open_clip_model.safetensors")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    run = run_checks(pytester, "-m", "clip and not model", world=world)
    assert "fix: HF_HUB_OFFLINE=0 python -m fetchers --clip" in run.message("test_published_weights[clip_b32]")
    row = next(a for a in run.report["assets"] if a["name"] == "clip_b32")
    assert "HF_HUB_OFFLINE=0 python -m fetchers --clip" in row["fix"], row
    assert row["fix_commands"] == ["HF_HUB_OFFLINE=0 python -m fetchers --clip"], row


def test_identity_check_never_imports_torch(tmp_path: Path):
    """`-m "phase1 and not model and not gpu"` with the models present: the identity runs on names and sizes."""
    from tests.checkrun import run_in_fresh_process

    build_tiny_world(tmp_path / "w")
    stdout, torch_imported = run_in_fresh_process(tmp_path / "w", "-m", "phase1 and not model and not gpu",
                                                  "-k", "published_weights", "-rA")
    assert "NO_TORCH" in stdout and not torch_imported, stdout[-3000:]
    assert "4 passed" in stdout, stdout[-3000:]


# --------------------------------------------------------------------------- the printed fix, run


def serve_tiny_repo(hub_server, world: Path, repo_id: str) -> None:
    """The fake Hub serves the tiny world's snapshot of ``repo_id`` at its pinned commit."""
    snap = snapshot_dir(cache_of(world), repo_id)
    hub_server.add_repo(repo_id, {p.name: p.read_bytes() for p in snap.iterdir()}, sha=snap.name)


def run_fix(commands: list[str], world: Path, asset: str) -> None:
    """Run a row's fix_commands as printed; the fetch command runs what it runs, with the tiny world's pins.

    ``python -m fetchers --siglip2`` fetches with the registry's (real) pins, which the tiny models do not
    match; ``fetch_hf_model`` with the world's facts is the same code path.
    """
    from checks.tiny import load_tiny_world
    from fetchers.hub import fetch_hf_model

    fetch = ASSETS[asset].fix.commands[-1]
    for command in commands:
        if command.endswith(fetch):
            fetch_hf_model(load_tiny_world(world).facts_for(asset), cache_dir=cache_of(world), log=None)
        else:
            subprocess.run(command, shell=True, check=True)


def test_corrupt_cached_config_is_repaired_by_the_printed_fix(pytester, world, hub):
    serve_tiny_repo(hub, world, SIGLIP_B)
    config = (snapshot_dir(cache_of(world), SIGLIP_B) / "config.json").resolve()
    config.write_bytes(config.read_bytes().replace(b'"hidden_size": 32', b'"hidden_size": 31'))  # valid JSON, edited
    run = run_checks(pytester, "-m", "siglip2 and not model", "--deep", world=world)
    # Issue 16: a small file is hashed by the quick check too (test_cache_complete), not only by --deep.
    assert run.failed() == {"test_models.py::test_cache_complete[siglip2_base]",
                            "test_models.py::test_weight_blobs_match_their_etags[siglip2_base]"}, \
        run.result.stdout.str()
    row = next(a for a in run.report["assets"] if a["name"] == "siglip2_base")
    assert row["status"] == "broken"
    assert row["fix_commands"] == [f"rm -- {config}", "python -m fetchers --siglip2"], row
    run_fix(row["fix_commands"], world, "siglip2_base")
    again = run_checks(pytester, "-m", "siglip2 and not model", "--deep", world=world)
    assert again.failed() == set() and again.status("siglip2_base") == "ready", again.result.stdout.str()
    assert len(hub.downloads(SIGLIP_B, "config.json")) == 1  # only the corrupt file was fetched again


def test_impostor_weights_are_replaced_by_the_printed_fix(pytester, world, hub):
    repo, name = CLIP_B, "open_clip_model.safetensors"
    serve_tiny_repo(hub, world, repo)
    plant_impostor(world, repo, name)
    run = run_checks(pytester, "-m", "clip and not model", world=world)
    row = next(a for a in run.report["assets"] if a["name"] == "clip_b32")
    assert row["status"] == "broken" and row["fix_commands"] == ["python -m fetchers --clip"], row
    run_fix(row["fix_commands"], world, "clip_b32")
    again = run_checks(pytester, "-m", "clip", world=world)
    assert again.failed() == set() and again.status("clip_b32") == "ready", again.result.stdout.str()


def test_bin_only_snapshot_gets_the_pinned_safetensors_from_the_printed_fix(pytester, world, hub):
    serve_tiny_repo(hub, world, CLIP_B)
    bin_only(cache_of(world), CLIP_B)
    run = run_checks(pytester, "-m", "clip and not model", world=world)
    row = next(a for a in run.report["assets"] if a["name"] == "clip_b32")
    assert row["status"] == "broken" and row["fix_commands"] == ["python -m fetchers --clip"], row
    run_fix(row["fix_commands"], world, "clip_b32")
    again = run_checks(pytester, "-m", "clip", world=world)
    assert again.failed() == set() and again.status("clip_b32") == "ready", again.result.stdout.str()
    assert (snapshot_dir(cache_of(world), CLIP_B) / "open_clip_model.safetensors").is_symlink()
