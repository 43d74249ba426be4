"""Unit tests of the model logic (checks.models, checks.tiny_models), the GPU classifier and envinfo.

Real transformers / open_clip code paths on tiny random models; faults are planted in a copy of
one shared tiny HF cache. Any attempt to reach the network fails the test.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from checks import envinfo, gpu
from checks.gpu import GpuObservation, arch_supported, classify, probe_gpu, required_free_bytes
from checks.models import (
    ModelLoadError,
    forward_check,
    hub_offline,
    load_model,
    verify_blobs,
)
from checks.tiny_models import relink_snapshot_file, snapshot_dir, write_tiny_models
from preflight_core.hf_cache import cache_report, repo_dir, safetensors_problem
from preflight_core.registry import ASSETS, ModelFacts

pytestmark = pytest.mark.torch  # tiny models are written and loaded with torch


REPO = Path(__file__).resolve().parents[1]
MODELS = ("siglip2_base", "siglip2_so400m", "clip_b32", "clip_l14")


# --------------------------------------------------------------------------- no network


def test_network_guard_refuses_outside_connections(no_network):
    """The autouse guard of tests/conftest.py: what it refuses is recorded, and fails any other test."""
    with pytest.raises(OSError, match="test guard"):
        socket.getaddrinfo("huggingface.co", 443)
    with socket.socket() as s, pytest.raises(OSError, match="test guard"):
        s.connect(("192.0.2.1", 443))
    assert no_network == ["resolve huggingface.co", "connect 192.0.2.1"]
    no_network.clear()  # expected here; anywhere else they fail the test


# --------------------------------------------------------------------------- the shared tiny cache


@dataclass(frozen=True)
class Tiny:
    root: Path
    hf_cache: Path
    config_dir: Path
    facts: dict[str, ModelFacts]


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    root = tmp_path_factory.mktemp("tiny_models")
    facts = write_tiny_models(root / "hub", root / "open_clip_configs")
    return Tiny(root, root / "hub", root / "open_clip_configs", facts)


@pytest.fixture
def cache(tiny: Tiny, tmp_path: Path) -> Path:
    """A private copy of the tiny HF cache to plant faults in (relative symlinks survive the copy)."""
    dst = tmp_path / "hub"
    shutil.copytree(tiny.hf_cache, dst, symlinks=True)
    return dst


def snapshot(hf_cache: Path, facts: ModelFacts) -> Path:
    return snapshot_dir(hf_cache, facts.repo_id)


def blob(hf_cache: Path, facts: ModelFacts, name: str) -> Path:
    return (snapshot(hf_cache, facts) / name).resolve()


# --------------------------------------------------------------------------- tiny models


def test_tiny_models_cover_every_model_asset(tiny: Tiny):
    assert set(tiny.facts) == set(MODELS)  # speed: bench/bench_model_checks.py, not a timed assertion


@pytest.mark.parametrize("name", MODELS)
def test_tiny_models_keep_real_repo_ids_and_context(tiny: Tiny, name: str):
    real, small = ASSETS[name].facts, tiny.facts[name]
    assert (small.repo_id, small.library, small.files, small.context_length, small.open_clip_name) == (
        real.repo_id, real.library, real.files, real.context_length, real.open_clip_name)
    assert small.embed_dim < real.embed_dim and small.image_size < real.image_size


def test_tiny_cache_layout_is_huggingface_hubs(tiny: Tiny):
    for name, facts in tiny.facts.items():
        rdir = repo_dir(tiny.hf_cache, facts.repo_id)
        commit = (rdir / "refs" / "main").read_text()
        assert len(commit) == 40 and int(commit, 16) >= 0
        for link in (rdir / "snapshots" / commit).iterdir():
            target = os.readlink(link)
            assert target.startswith("../../blobs/"), (name, link.name, target)
            etag = Path(target).name
            lfs = link.name.endswith(".safetensors")
            assert len(etag) == (64 if lfs else 40), (link.name, etag)
    assert sorted(p.name for p in tiny.config_dir.iterdir()) == ["ViT-B-32-quickgelu.json", "ViT-L-14-quickgelu.json"]


def test_tiny_siglip_snapshot_has_the_real_file_set(tiny: Tiny):
    snap = snapshot(tiny.hf_cache, tiny.facts["siglip2_base"])
    assert sorted(p.name for p in snap.iterdir()) == sorted([
        "config.json", "model.safetensors", "preprocessor_config.json", "special_tokens_map.json",
        "tokenizer.json", "tokenizer_config.json"])


def test_tiny_models_are_deterministic(tiny: Tiny, tmp_path: Path):
    write_tiny_models(tmp_path / "hub", tmp_path / "cfg")
    for facts in tiny.facts.values():
        assert (repo_dir(tmp_path / "hub", facts.repo_id) / "refs" / "main").read_text() == \
               (repo_dir(tiny.hf_cache, facts.repo_id) / "refs" / "main").read_text()


# --------------------------------------------------------------------------- clean: report, verify, load, forward


@pytest.mark.parametrize("name", MODELS)
def test_cache_report_of_clean_tiny_model(tiny: Tiny, name: str):
    rep = cache_report(tiny.facts[name], tiny.hf_cache)
    assert rep.complete, rep.problems()
    assert (rep.missing, rep.broken, rep.problems()) == ([], [], [])
    assert rep.snapshot == snapshot(tiny.hf_cache, tiny.facts[name])
    assert rep.bytes >= tiny.facts[name].approx_weight_bytes > 0


def test_cache_report_of_absent_model(tmp_path: Path):
    facts = ASSETS["clip_l14"].facts
    rep = cache_report(facts, tmp_path)
    assert not rep.complete and rep.snapshot is None
    assert rep.missing == ["open_clip_model.safetensors or open_clip_pytorch_model.bin"]
    (msg,) = rep.problems()
    assert "timm/vit_large_patch14_clip_224.openai" in msg and "python -m fetchers --clip" in msg


def test_cache_report_imports_no_ml_library(tiny: Tiny, tmp_path: Path):
    code = (
        "import sys; from pathlib import Path; from preflight_core.hf_cache import cache_report; from checks.models import verify_blobs; "
        "from preflight_core.registry import ASSETS; "
        f"r = cache_report(ASSETS['siglip2_base'].facts, Path({str(tiny.hf_cache)!r})); assert r.snapshot; "
        f"verify_blobs(r.snapshot, ASSETS['siglip2_base'].facts.files, Path({str(tmp_path / 'verified')!r})); "
        "import checks.envinfo as e; e.environment_summary(); e.environment_problems(); "
        "bad = sorted({'torch', 'transformers', 'open_clip', 'huggingface_hub'} & set(sys.modules)); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


@pytest.mark.parametrize("name", MODELS)
def test_load_and_forward_tiny_model_on_cpu(tiny: Tiny, name: str):
    facts = tiny.facts[name]
    loaded = load_model(facts, tiny.hf_cache, "cpu", tiny.config_dir)
    if facts.library == "transformers":
        assert loaded.classes == {"model": "SiglipModel", "processor": "SiglipProcessor",
                                  "tokenizer": "GemmaTokenizer", "image_processor": "SiglipImageProcessor"}
    else:
        assert loaded.classes["model"] == "CLIP" and loaded.classes["tokenizer"] == "SimpleTokenizer"
    assert loaded.weights_file and loaded.weights_file.exists()
    assert loaded.param_bytes > 0 and loaded.load_seconds > 0
    res = forward_check(loaded, facts)
    assert res.problems == []
    assert res.image_embed_dim == res.text_embed_dim == facts.embed_dim
    assert res.pixel_shape == (2, 3, facts.image_size, facts.image_size)
    assert res.token_shape == (2, facts.context_length)
    assert len(res.similarity) == 2 and all(len(row) == 2 for row in res.similarity)
    if facts.library == "transformers":
        assert res.image_norms == pytest.approx([1, 1], abs=1e-4)
        # like google/siglip2-*: "do_convert_rgb": null, so a grayscale PIL image needs .convert("RGB")
        assert any("grayscale" in n and "convert('RGB')" in n for n in res.notes)


def test_load_model_loads_once_per_process(tiny: Tiny):
    facts = tiny.facts["clip_b32"]
    first = load_model(facts, tiny.hf_cache, "cpu", tiny.config_dir)
    assert load_model(facts, tiny.hf_cache, "cpu", tiny.config_dir) is first


def test_tiny_open_clip_configs_do_not_leak(tiny: Tiny):
    load_model(tiny.facts["clip_b32"], tiny.hf_cache, "cpu", tiny.config_dir)
    from open_clip.factory import get_model_config

    assert get_model_config("ViT-B-32-quickgelu")["embed_dim"] == 512  # the real config again


def test_hub_offline_is_scoped():
    from huggingface_hub import constants

    before, env = constants.HF_HUB_OFFLINE, os.environ.get("HF_HUB_OFFLINE")
    with hub_offline():
        assert constants.is_offline_mode()
    assert (constants.HF_HUB_OFFLINE, os.environ.get("HF_HUB_OFFLINE")) == (before, env)


def test_hub_offline_in_a_fresh_process_leaves_no_trace():
    """First import inside the context: huggingface_hub reads our "1"; afterwards it must say offline=False."""
    code = ("import os; os.environ.pop('HF_HUB_OFFLINE', None); os.environ.pop('TRANSFORMERS_OFFLINE', None); "
            "from checks.models import hub_offline\n"
            "with hub_offline():\n    from huggingface_hub import constants; assert constants.is_offline_mode()\n"
            "assert not constants.is_offline_mode() and 'HF_HUB_OFFLINE' not in os.environ")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_load_onto_missing_cuda_fails_clearly(tiny: Tiny):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ModelLoadError, match=r"cannot load onto cuda: torch.cuda.is_available\(\) is False"):
        load_model(tiny.facts["siglip2_base"], tiny.hf_cache, "cuda")


def test_verify_blobs_clean_and_cached(tiny: Tiny, cache: Path, tmp_path: Path):
    facts = tiny.facts["siglip2_base"]
    db = tmp_path / "verified"
    snap = snapshot(cache, facts)
    assert verify_blobs(snap, facts.files, db) == []
    # Same size, same mtime, different bytes: the cache keys on the inode's ctime too (a write always
    # moves it), so an entry can never vouch for changed content, and the corruption shows.
    weights = blob(cache, facts, "model.safetensors")
    st = weights.stat()
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    (msg,) = verify_blobs(snap, facts.files, db)
    assert "model.safetensors is corrupt" in msg and weights.name[:16] in msg and "--siglip2" in msg


def test_verify_blobs_refuses_to_pass_what_it_cannot_check(tiny: Tiny, cache: Path):
    facts = tiny.facts["clip_b32"]
    link = snapshot(cache, facts) / "open_clip_model.safetensors"
    data = link.read_bytes()
    link.unlink()
    link.write_bytes(data)  # a cache written without symlinks
    (msg,) = verify_blobs(link.parent, facts.files, None)
    assert "cannot be verified" in msg and "plain file" in msg


# --------------------------------------------------------------------------- planted faults


def test_missing_weight_file(tiny: Tiny, cache: Path):
    facts = tiny.facts["siglip2_base"]
    (snapshot(cache, facts) / "model.safetensors").unlink()
    rep = cache_report(facts, cache)
    assert rep.missing == ["model.safetensors"] and not rep.complete
    (msg,) = rep.problems()
    assert "model.safetensors" in msg and str(rep.snapshot) in msg and "python -m fetchers --siglip2" in msg
    with pytest.raises(ModelLoadError, match=r"google/siglip2-base-patch16-224.*fix: python -m fetchers --siglip2"):
        load_model(facts, cache, "cpu")


def test_missing_open_clip_weights(tiny: Tiny, cache: Path):
    facts = tiny.facts["clip_b32"]
    (snapshot(cache, facts) / "open_clip_model.safetensors").unlink()
    assert cache_report(facts, cache).missing == ["open_clip_model.safetensors or open_clip_pytorch_model.bin"]
    with pytest.raises(ModelLoadError, match=r"pretrained='openai'\) failed offline.*fix: python -m fetchers --clip"):
        load_model(facts, cache, "cpu", tiny.config_dir)


@pytest.mark.parametrize("name", ["siglip2_base", "clip_l14"])
def test_truncated_safetensors(tiny: Tiny, cache: Path, name: str):
    facts = tiny.facts[name]
    fname = facts.files[1] if facts.library == "transformers" else facts.files[0][0]
    weights = blob(cache, facts, fname)
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    rep = cache_report(facts, cache)
    ((bad, reason),) = rep.broken
    assert bad == fname and "truncated" in reason and f"{len(data) - len(data) // 2:,} bytes short" in reason
    (msg,) = rep.problems()
    # The fetch replaces a cached blob whose content does not match its etag name: the fix is the fetch alone.
    assert not rep.complete and fname in msg and msg.endswith(f"fix: {ASSETS[name].fix.commands[0]}")
    assert rep.findings()[0].the_fix.commands == ASSETS[name].fix.commands
    with pytest.raises(ModelLoadError, match=facts.repo_id):
        load_model(facts, cache, "cpu", tiny.config_dir)
    assert any("corrupt" in p for p in verify_blobs(rep.snapshot, facts.files, None))
    present = cache_report(facts, cache, check_files=False)  # huggingface_hub's view: there, so not fetched again
    assert present.complete and fname in present.present


def test_safetensors_header_garbage(tmp_path: Path):
    f = tmp_path / "x.safetensors"
    f.write_bytes((5).to_bytes(8, "little") + b"{nope" + b"\0" * 10)
    assert "not valid JSON" in safetensors_problem(f)
    f.write_bytes(b"\x01\x02")
    assert "too short" in safetensors_problem(f)
    f.write_bytes((10**9).to_bytes(8, "little") + b"{}")
    assert "does not fit" in safetensors_problem(f)


def test_missing_tokenizer_file(tiny: Tiny, cache: Path):
    facts = tiny.facts["siglip2_base"]
    (snapshot(cache, facts) / "tokenizer.json").unlink()
    rep = cache_report(facts, cache)
    assert rep.missing == ["tokenizer.json"]
    assert "tokenizer.json" in rep.problems()[0]
    # transformers still "loads" (a 5-token GemmaTokenizer); the forward check catches it.
    res = forward_check(load_model(facts, cache, "cpu"), facts)
    assert any("tokenizer knows 5 tokens" in p and "tokenizer.json missing" in p for p in res.problems), res.problems


def test_wrong_model_class(tiny: Tiny, cache: Path):
    facts = tiny.facts["siglip2_base"]
    cfg = json.loads((snapshot(cache, facts) / "config.json").read_text())
    cfg = {**cfg, **cfg["vision_config"], "model_type": "siglip_vision_model"}  # a vision-tower-only checkpoint
    relink_snapshot_file(cache, facts.repo_id, "config.json", json.dumps(cfg).encode())
    assert cache_report(facts, cache).complete
    with pytest.raises(ModelLoadError, match="AutoModel gave SiglipVisionModel .* expected SiglipModel"):
        load_model(facts, cache, "cpu")


def test_checkpoint_missing_tensors(tiny: Tiny, cache: Path):
    """transformers 5 only logs absent weights and initialises them at random; load_model refuses."""
    from safetensors.torch import load_file, save

    facts = tiny.facts["siglip2_base"]
    sd = load_file(blob(cache, facts, "model.safetensors"))
    sd = {k: v for k, v in sd.items() if not k.startswith("text_model.head.")}
    relink_snapshot_file(cache, facts.repo_id, "model.safetensors", save(sd, metadata={"format": "pt"}))
    assert cache_report(facts, cache).complete
    with pytest.raises(ModelLoadError, match=r"lacks weights .* text_model\.head\.bias, text_model\.head\.weight"):
        load_model(facts, cache, "cpu")


def test_missing_preprocessor_config(tiny: Tiny, cache: Path):
    facts = tiny.facts["siglip2_base"]
    (snapshot(cache, facts) / "preprocessor_config.json").unlink()
    assert cache_report(facts, cache).missing == ["preprocessor_config.json"]
    with pytest.raises(ModelLoadError, match="AutoProcessor.from_pretrained failed offline"):
        load_model(facts, cache, "cpu")


@pytest.mark.parametrize("name", ["siglip2_base", "clip_b32"])
def test_dims_disagree_with_expectation(tiny: Tiny, name: str):
    real = ASSETS[name].facts  # says 768/512-dim and 224 px; the tiny model gives 32 and 32 px
    res = forward_check(load_model(tiny.facts[name], tiny.hf_cache, "cpu", tiny.config_dir), real)
    text = "\n".join(res.problems)
    assert f"image embedding dim is 32, expected {real.embed_dim}" in text
    assert f"text embedding dim is 32, expected {real.embed_dim}" in text
    assert "expected (224, 224)" in text and real.repo_id in text
    if real.library == "transformers":
        assert "the snapshot holds a different model" in text and str(ASSETS[name].fix) in text
    else:  # open_clip's architecture comes from its model config, not from the snapshot
        assert "open_clip's 'ViT-B-32-quickgelu' config describes a different model" in text


def test_broken_snapshot_symlink(tiny: Tiny, cache: Path):
    facts = tiny.facts["siglip2_so400m"]
    blob(cache, facts, "config.json").unlink()
    rep = cache_report(facts, cache)
    ((bad, reason),) = rep.broken
    assert bad == "config.json" and "is gone (dangling link)" in reason
    assert not cache_report(facts, cache, check_files=False).complete  # a fetch brings the blob back
    with pytest.raises(ModelLoadError, match="google/siglip2-so400m-patch14-384"):
        load_model(facts, cache, "cpu")


def test_missing_refs_main(tiny: Tiny, cache: Path):
    facts = tiny.facts["clip_b32"]
    (repo_dir(cache, facts.repo_id) / "refs" / "main").unlink()
    rep = cache_report(facts, cache)
    assert rep.snapshot is None and not rep.complete
    assert rep.broken[0][0] == "refs/main" and "offline loading resolves 'main'" in rep.broken[0][1]


@pytest.mark.parametrize("name", ["siglip2_base", "clip_b32"])
def test_nan_weights(tiny: Tiny, cache: Path, name: str):
    from safetensors.torch import load_file, save

    facts = tiny.facts[name]
    fname = "model.safetensors" if facts.library == "transformers" else "open_clip_model.safetensors"
    sd = load_file(blob(cache, facts, fname))
    key = next(k for k in sd if "patch_embed" in k or k == "visual.conv1.weight")
    sd[key].fill_(float("nan"))
    relink_snapshot_file(cache, facts.repo_id, fname, save(sd, metadata={"format": "pt"}))
    assert cache_report(facts, cache).complete  # structurally fine
    res = forward_check(load_model(facts, cache, "cpu", tiny.config_dir), facts)
    assert any("image embeddings are not finite" in p and "--deep" in p for p in res.problems), res.problems
    assert len(res.problems) == 1, res.problems  # the text tower is fine, and no follow-on noise


def test_load_failure_is_remembered(tiny: Tiny, cache: Path):
    facts = tiny.facts["clip_l14"]
    (snapshot(cache, facts) / "open_clip_model.safetensors").unlink()
    with pytest.raises(ModelLoadError) as first:
        load_model(facts, cache, "cpu", tiny.config_dir)
    with pytest.raises(ModelLoadError) as second:
        load_model(facts, cache, "cpu", tiny.config_dir)
    assert second.value is first.value


# --------------------------------------------------------------------------- GPU classifier

CUDA = dict(torch_version="2.14.1+cu130", cuda_build="13.0",
            arch_list=("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"))
H100 = GpuObservation("cuda", **CUDA, device_count=1, name="NVIDIA H100 80GB HBM3", capability=(9, 0),
                      kernel_ok=True, kernel_seconds=0.01, free_bytes=79 << 30, total_bytes=80 << 30, bf16=True)


@pytest.mark.parametrize("obs, cause, words", [
    (GpuObservation("cuda", torch_version="2.14.1+cpu"), "cpu-only-build", ["CPU-only build", "--index-url"]),
    (GpuObservation("cuda", **CUDA, init_error="Found no NVIDIA driver on your system. Please check that you "
                    "have an NVIDIA GPU and installed a driver"), "no-driver", ["no NVIDIA driver", "--device cpu"]),
    (GpuObservation("cuda", **CUDA, cuda_visible_devices="", init_error="No CUDA GPUs are available"),
     "no-device-visible", ["CUDA_VISIBLE_DEVICES=''", "unset CUDA_VISIBLE_DEVICES"]),
    (GpuObservation("cuda", **CUDA, cuda_visible_devices="0"), "no-device-visible", ["sees no GPU"]),
    (GpuObservation("cuda", **CUDA, init_error="The NVIDIA driver on your system is too old (found version "
                    "11040). Please update your GPU driver"), "driver-too-old", ["too old", "found version 11040",
                                                                                   "CUDA 13.0", "nvidia-smi"]),
    (GpuObservation("cuda", **CUDA, init_error="CUDA driver version is insufficient for CUDA runtime version"),
     "driver-too-old", ["insufficient"]),
    (GpuObservation("cuda", **CUDA, init_error="CUDA unknown error - this may be due to an incorrectly set up "
                    "environment"), "cuda-init-failed", ["unknown error", "Xid"]),
    (replace(H100, device="cuda:3"), "bad-device-index", ["cuda:3 does not exist", "1 GPU(s)"]),
    (replace(H100, name="Tesla K80", capability=(3, 7), kernel_ok=False,
             kernel_error="CUDA error: no kernel image is available for execution on the device"),
     "arch-missing", ["sm_37", "sm_75, sm_80", "includes sm_37"]),
    (replace(H100, name="Future GPU", capability=(13, 0)), "arch-missing", ["sm_130"]),
    (replace(H100, kernel_ok=False, kernel_error="CUDA error: an illegal memory access was encountered"),
     "kernel-failed", ["illegal memory access", "ECC"]),
    (replace(H100, kernel_ok=False), "kernel-wrong", ["different result"]),
])
def test_gpu_classifier_failures(obs: GpuObservation, cause: str, words: list[str]):
    report = classify(obs)
    assert (report.status, report.cause) == ("failed", cause)
    (msg,) = report.problems
    assert " — fix: " in msg
    for w in words:
        assert w in msg, (w, msg)


def test_gpu_classifier_ok_and_memory():
    report = classify(H100)
    assert report.ok and report.problems == [] and "H100" in report.summary() and "sm_90" in report.summary()
    short = classify(replace(H100, free_bytes=2 << 30), required_bytes=9 << 30)
    assert short.cause == "not-enough-memory" and "2.0 GiB free of 80.0 GiB" in short.problems[0]
    assert "9.0 GiB" in short.problems[0]
    no_bf16 = classify(replace(H100, name="Tesla T4", capability=(7, 5), bf16=False))
    assert no_bf16.ok and "no native bf16" in no_bf16.notes[0]


def test_gpu_cpu_device_is_skipped():
    report = probe_gpu("cpu")
    assert report.status == "skipped" and report.cause == "cpu-device"


def test_probe_gpu_on_this_machine_never_passes_silently():
    """Real torch: a working GPU → ok; anything else → failed with a cause and a fix (never an exception)."""
    report = probe_gpu("cuda")
    if report.ok:
        assert report.observation.kernel_ok and report.observation.total_bytes
    else:
        assert report.cause != "ok" and report.problems and "fix:" in report.problems[0]


@pytest.mark.parametrize("cc, archs, ok", [
    ((8, 6), ["sm_80"], True),  # same major, higher minor runs the sm_80 SASS
    ((8, 0), ["sm_86"], False),
    ((9, 0), ["sm_80", "compute_80"], True),  # PTX is JIT-compiled forward
    ((12, 0), ["sm_50", "sm_90"], False),
    ((9, 0), ["sm_90a"], True),
    ((10, 0), ["sm_90a"], False),
])
def test_arch_supported(cc, archs, ok):
    assert arch_supported(cc, archs) is ok


def test_required_free_bytes():
    facts = [ASSETS[n].facts for n in MODELS]
    weights = sum(f.approx_weight_bytes for f in facts)
    largest = ASSETS["siglip2_so400m"].facts.approx_weight_bytes  # 4,544,143,072 B: its activations, a quarter
    assert required_free_bytes(facts) == weights + largest // 4 + gpu.CUDA_CONTEXT_BYTES
    assert required_free_bytes([]) == 0


# --------------------------------------------------------------------------- environment


def test_environment_summary_reads_metadata():
    import importlib.metadata as md

    s = envinfo.environment_summary()
    assert s["python"] == sys.version.split()[0]
    assert s["transformers"] == md.version("transformers") and s["open_clip"] == md.version("open_clip_torch")
    import torch

    assert s["torch_cuda_build"] == torch.version.cuda


def test_environment_of_this_venv_is_fine():
    assert envinfo.environment_problems() == []
    assert envinfo.torch_pair_problem() is None


def test_environment_problems_detected(monkeypatch: pytest.MonkeyPatch):
    fake = {"torch": "2.14.1+cu130", "torchvision": "0.28.0+cpu", "transformers": "4.49.0", "open_clip": "2.32.0",
            "huggingface_hub": "0.30.0", "safetensors": "0.5", "pillow": None}
    monkeypatch.setattr(envinfo, "version_of", lambda name: fake.get(name))
    text = "\n".join(f.message() for f in envinfo.environment_problems())
    assert "pillow is not installed" in text
    assert "transformers 4.49.0 is too old for SigLIP2" in text
    assert "open_clip_torch 2.32.0: preflight expects 3.x" in text
    assert "torch 2.14 needs torchvision 0.29" in text
    assert "(cu130) and torchvision (cpu) are built for different CUDA" in text


def test_summary_redacts_credentials(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HF_ENDPOINT", "https://user:s3cret@mirror.example:8443/hf")
    assert envinfo.environment_summary()["hf_endpoint"] == "https://mirror.example:8443/hf"
    monkeypatch.setenv("PREFLIGHT_MIRROR", "https://user:p@ss@mirror.example/files")
    assert envinfo.environment_summary()["preflight_mirror"] == "https://mirror.example/files"
    monkeypatch.delenv("HF_ENDPOINT")
    assert envinfo.environment_summary()["hf_endpoint"] is None
