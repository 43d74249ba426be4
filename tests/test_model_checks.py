"""The model, GPU and environment checks through pytest, on tiny worlds with planted faults."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from checks.tiny import WORLD_FILE, build_tiny_world
from checks.tiny_models import relink_snapshot_file, snapshot_dir
from tests.checkrun import clean_environment, run_checks

pytestmark = pytest.mark.torch  # tiny models are written and loaded with torch


MODELS = "siglip2 or clip or env or gpu"


def snapshot(world: Path, repo_id: str) -> Path:
    return snapshot_dir(world / "hf" / "hub", repo_id)


def nan_weights(path: Path) -> bytes:
    import torch
    from safetensors.torch import load_file, save

    tensors = load_file(path)
    return save({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in tensors.items()})


def edit_facts(world: Path, asset: str, **changes) -> None:
    raw = json.loads((world / WORLD_FILE).read_text())
    raw["facts"][asset].update(changes)
    (world / WORLD_FILE).write_text(json.dumps(raw))


SIGLIP_B, SIGLIP_L = "google/siglip2-base-patch16-224", "google/siglip2-so400m-patch14-384"
CLIP_B = "timm/vit_base_patch32_clip_224.openai"


def test_clean_tiny_models_pass_on_cpu(pytester, world):
    run = run_checks(pytester, "-m", MODELS, world=world)
    assert run.ret == 0, run.result.stdout.str()
    statuses = run.statuses()
    assert statuses.pop("gpu") == "not-checked"  # --device cpu: never "ready"
    assert set(statuses.values()) == {"ready"}, statuses
    run.result.stdout.fnmatch_lines(["*siglip2_base*ready*", "*loaded offline*SiglipModel*",
                                     "*forward on cpu: dim 32*"])


def missing_weights(world):
    (snapshot(world, SIGLIP_B) / "model.safetensors").unlink()


def truncated_safetensors(world):
    blob = (snapshot(world, CLIP_B) / "open_clip_model.safetensors").resolve()
    data = blob.read_bytes()
    blob.write_bytes(data[: len(data) - 1000])


def missing_tokenizer(world):
    (snapshot(world, SIGLIP_L) / "tokenizer.json").unlink()


def broken_symlink(world):
    (snapshot(world, SIGLIP_B) / "config.json").resolve().unlink()


def dims_disagree(world):
    edit_facts(world, "siglip2_base", embed_dim=768)


def nan_model(world):
    """NaN weights that are the pinned ones (re-pinned here): the forward check alone must catch them."""
    name = "open_clip_model.safetensors"
    data = nan_weights(snapshot(world, CLIP_B) / name)
    relink_snapshot_file(world / "hf" / "hub", CLIP_B, name, data)
    edit_facts(world, "clip_b32", weights_size=len(data), weights_sha256=hashlib.sha256(data).hexdigest())


FAULTS = [
    (missing_weights, "test_cache_complete[siglip2_base]", "model.safetensors"),
    (truncated_safetensors, "test_cache_complete[clip_b32]", "open_clip_model.safetensors"),
    (missing_tokenizer, "test_cache_complete[siglip2_so400m]", "tokenizer.json"),
    (broken_symlink, "test_cache_complete[siglip2_base]", "config.json"),
    (dims_disagree, "test_forward_pass[siglip2_base]", "768"),
    (nan_model, "test_forward_pass[clip_b32]", "finite"),
]


@pytest.mark.parametrize(("fault", "failing", "phrase"), FAULTS, ids=[f[0].__name__ for f in FAULTS])
def test_planted_model_fault_fails_the_right_check(pytester, world, fault, failing, phrase):
    fault(world)
    run = run_checks(pytester, "-m", MODELS, world=world)
    assert run.failed() == {f"test_models.py::{failing}"}, run.result.stdout.str()
    assert phrase in run.message(failing)
    assert run.ret == 1
    asset = failing.split("[")[1].rstrip("]")
    assert run.status(asset) == "broken"


def test_incomplete_cache_is_not_loaded(pytester, world):
    """A model whose cache is incomplete is not loaded at all: its load and forward are not-checked."""
    missing_weights(world)
    run = run_checks(pytester, "-m", MODELS, world=world)
    outcomes = run.outcomes()
    assert outcomes["test_models.py::test_loads_offline_with_the_right_classes[siglip2_base]"] == "skipped"
    assert outcomes["test_models.py::test_forward_pass[siglip2_base]"] == "skipped"


def test_deep_hashes_weight_blobs(pytester, world):
    assert run_checks(pytester, "-m", "siglip2 or clip", "--deep", world=world).ret == 0
    blob = (snapshot(world, SIGLIP_B) / "model.safetensors").resolve()
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF  # same size, one byte different: only a hash notices
    blob.write_bytes(bytes(data))
    run = run_checks(pytester, "-m", "siglip2 or clip", "--deep", world=world)
    assert run.failed() == {"test_models.py::test_weight_blobs_match_their_etags[siglip2_base]"}, \
        run.result.stdout.str()


def test_gpu_is_not_checked_on_cpu_and_never_passes(pytester, world):
    run = run_checks(pytester, "-m", "gpu and not model", world=world)
    assert run.ret == 1 and "no check passed" in run.report["verdict"]  # nothing is READY over nothing
    assert run.status("gpu") == "not-checked"
    assert "passed" not in {v for k, v in run.outcomes().items() if k.startswith("test_gpu.py")}


def test_gpu_on_a_machine_without_one_fails_clearly(pytester, world):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    run = run_checks(pytester, "-m", "gpu and not model", "--device=cuda", world=world)
    assert run.failed() == {"test_gpu.py::test_cuda_kernel_runs"}
    assert run.status("gpu") == "broken"
    assert "fix:" in run.message("test_cuda_kernel_runs")


def test_forward_passes_on_cuda_without_gpu_are_not_checked(pytester, world):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    run = run_checks(pytester, "-m", "clip", "--device=cuda", world=world)
    assert run.outcomes()["test_models.py::test_forward_pass[clip_b32]"] == "skipped"
    assert run.status("clip_b32") == "not-checked"


def test_empty_cache_reports_each_model_missing_without_network(pytester, tmp_path, monkeypatch):
    clean_environment(monkeypatch)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    run = run_checks(pytester, "-m", "phase1 and (siglip2 or clip)", f"--data-root={tmp_path / 'raw'}")
    statuses = run.statuses()
    assert statuses == {n: "missing" for n in ("siglip2_base", "siglip2_so400m", "clip_b32", "clip_l14")}
    fixes = {a["name"]: a["fix"] for a in run.report["assets"]}
    assert fixes["siglip2_base"] == "python -m fetchers --siglip2"
    assert fixes["clip_l14"] == "python -m fetchers --clip"
    # and no network attempt: the autouse loopback guard of tests/conftest.py fails the test on one


def test_data_only_checks_never_import_torch(tmp_path):
    """`-m "phase1 and not model and not gpu"` stays light: a fresh process, then look at sys.modules."""
    from tests.checkrun import run_in_fresh_process

    build_tiny_world(tmp_path / "w", models=False)
    stdout, torch_imported = run_in_fresh_process(tmp_path / "w", "-m", "phase1 and not model and not gpu")
    assert "NO_TORCH" in stdout and not torch_imported, stdout[-3000:]


def test_model_marker_expression_keeps_required_models_required(pytester, tmp_path, monkeypatch):
    """`-m "phase1 and model"` deselects the presence checks; absent models must still fail, not skip."""
    clean_environment(monkeypatch)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    run = run_checks(pytester, "-m", "phase1 and model and clip", f"--data-root={tmp_path / 'raw'}", "--device=cpu")
    assert run.ret == 1
    assert run.statuses() == {"clip_b32": "missing", "clip_l14": "missing"}
