"""fetchers.hub with the real huggingface_hub (and open_clip) against the fake Hub of tests/fakes/hub_server.py.

huggingface_hub reads HF_ENDPOINT, HF_HUB_CACHE, HF_HUB_OFFLINE, ... once, when ``huggingface_hub.constants`` is
first imported, and this process imported it long ago (the plugin). So the in-process tests set the env vars
the fetcher reads at call time (HF_ENDPOINT, HF_HOME) and set the few import-time constants the way those env
vars would have (offline mode, telemetry, token file); one subprocess test runs with plain env vars set before
the import, as a user's shell would.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from core.registry import ASSETS, ModelFacts
from fetchers.hub import HubFetchError, fetch_hf_model
from tests.fakes.hub_server import FakeHub
from tests.fakes.network import loopback_only

REPO_ROOT = Path(__file__).resolve().parents[1]
SIGLIP: ModelFacts = ASSETS["siglip2_base"].facts  # type: ignore[assignment]
CLIP: ModelFacts = ASSETS["clip_b32"].facts  # type: ignore[assignment]
SECRET = "hf_TESTSECRET_do_not_print_4711"


def siglip_repo() -> dict[str, bytes]:
    files = {name: json.dumps({"file": name}).encode() for name in SIGLIP.files if isinstance(name, str)}
    files["model.safetensors"] = os.urandom(200_000)
    # present in the repo, not needed by the model: must never be requested
    files.update({"README.md": b"# card\n", ".gitattributes": b"*.safetensors filter=lfs\n",
                  "tf_model.h5": os.urandom(50_000), "tokenizer.model": os.urandom(30_000)})
    return files




def hf_cache(tmp_path: Path) -> Path:
    return tmp_path / "hf" / "hub"


def test_siglip2_snapshot_lands_in_the_cache_layout_once(hub: FakeHub, tmp_path: Path) -> None:
    repo = hub.add_repo(SIGLIP.repo_id, siglip_repo())

    result = fetch_hf_model(SIGLIP)

    folder = hf_cache(tmp_path) / "models--google--siglip2-base-patch16-224"
    assert result.path == folder / "snapshots" / repo.sha and not result.already_present
    assert (folder / "refs" / "main").read_text() == repo.sha
    assert sorted(p.name for p in result.path.iterdir()) == sorted(SIGLIP.files)
    for name in SIGLIP.files:
        link = result.path / name
        f = hub.file(SIGLIP.repo_id, name)
        assert link.is_symlink() and os.readlink(link) == f"../../blobs/{f.etag}"  # sha256 for LFS, git oid else
        assert link.read_bytes() == f.data
        assert len(hub.downloads(SIGLIP.repo_id, name)) == 1, name
    assert hub.file(SIGLIP.repo_id, "model.safetensors").etag == hashlib.sha256(
        (result.path / "model.safetensors").read_bytes()).hexdigest()
    for unneeded in ("README.md", ".gitattributes", "tf_model.h5", "tokenizer.model"):
        assert not any(unneeded in r.path for r in hub.log), unneeded
    assert result.bytes_downloaded == sum(len(hub.file(SIGLIP.repo_id, n).data) for n in SIGLIP.files)
    assert not any(r.authorized for r in hub.log)  # no token configured, none sent
    assert [r.status for r in hub.log if r.server == "cdn"] == [200]  # only model.safetensors is LFS here

    hub.clear_log()
    again = fetch_hf_model(SIGLIP)
    assert again.already_present and again.path == result.path and again.bytes_downloaded == 0
    assert hub.log == []  # the second call does not even ask the Hub


def test_concurrent_fetches_download_each_file_once(hub: FakeHub) -> None:
    hub.add_repo(SIGLIP.repo_id, siglip_repo())
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: fetch_hf_model(SIGLIP), range(3)))
    assert sorted(r.already_present for r in results) == [False, True, True]
    assert all(len(hub.downloads(SIGLIP.repo_id, n)) == 1 for n in SIGLIP.files)


# --- CLIP through open_clip ------------------------------------------------------------------
TINY_CLIP = {
    "embed_dim": 16, "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}


@contextmanager
def tiny_clip_config(folder: Path) -> Iterator[None]:
    """Register a tiny ViT under the real name ViT-B-32-quickgelu (open_clip's registry restored afterwards)."""
    import open_clip
    import open_clip.factory as factory

    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{CLIP.open_clip_name}.json").write_text(json.dumps(TINY_CLIP))
    saved_paths, saved_configs = list(factory._MODEL_CONFIG_PATHS), dict(factory._MODEL_CONFIGS)
    try:
        open_clip.add_model_config(folder)
        yield
    finally:
        factory._MODEL_CONFIG_PATHS[:] = saved_paths
        factory._MODEL_CONFIGS = saved_configs


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A tiny random open_clip model's weights, as safetensors and as a torch pickle."""
    import open_clip
    import safetensors.torch
    import torch

    config_dir = tmp_path_factory.mktemp("open_clip_configs")
    with tiny_clip_config(config_dir):
        model = open_clip.create_model(CLIP.open_clip_name, pretrained=None)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    buf = io.BytesIO()
    torch.save(state, buf)
    return {"config_dir": config_dir, "state": state, "safetensors": safetensors.torch.save(state),
            "bin": buf.getvalue()}


@pytest.mark.parametrize("asset", ["clip_b32", "clip_l14"])
def test_open_clip_resolves_the_registry_repo_and_files(asset: str) -> None:
    from fetchers.hub import _open_clip_weights

    facts = ASSETS[asset].facts
    assert _open_clip_weights(facts) == (facts.repo_id, ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"))


def test_clip_weights_land_where_open_clip_finds_them_offline(hub: FakeHub, tmp_path: Path, tiny_clip: dict,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import open_clip
    import torch
    from huggingface_hub import constants

    hub.add_repo(CLIP.repo_id, {"open_clip_model.safetensors": tiny_clip["safetensors"],
                                "open_clip_pytorch_model.bin": tiny_clip["bin"], "README.md": b"card"})
    cache = tmp_path / "elsewhere"  # an explicit cache_dir wins over HF_HOME

    result = fetch_hf_model(CLIP, cache_dir=cache)

    assert result.path.name == "open_clip_model.safetensors" and result.path.is_relative_to(cache)
    assert len(hub.downloads(CLIP.repo_id, "open_clip_model.safetensors")) == 1
    assert not hub.requests(contains="open_clip_pytorch_model.bin")  # never even asked for
    assert not hub.requests(contains="/api/")  # one file: no model info, no tree listing

    hub.clear_log()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # what HF_HUB_OFFLINE=1 sets at import
    with tiny_clip_config(tiny_clip["config_dir"]):
        model, _, _ = open_clip.create_model_and_transforms(CLIP.open_clip_name, pretrained="openai",
                                                            cache_dir=str(cache))
    assert hub.log == []
    for name, tensor in tiny_clip["state"].items():
        assert torch.equal(model.state_dict()[name], tensor), name
    assert open_clip.get_model_config(CLIP.open_clip_name)["embed_dim"] == CLIP.embed_dim  # registry restored


def test_clip_falls_back_to_the_pickle_when_the_repo_has_no_safetensors(hub: FakeHub, tiny_clip: dict) -> None:
    hub.add_repo(CLIP.repo_id, {"open_clip_pytorch_model.bin": tiny_clip["bin"]})

    result = fetch_hf_model(CLIP)

    assert result.path.name == "open_clip_pytorch_model.bin" and result.path.read_bytes() == tiny_clip["bin"]
    assert [r.status for r in hub.requests("HEAD")] == [404, 302]  # safetensors asked first, as open_clip does
    hub.clear_log()
    assert fetch_hf_model(CLIP).already_present and hub.log == []


# --- faults ----------------------------------------------------------------------------------
def test_missing_repo_names_the_repo_and_the_fix(hub: FakeHub) -> None:
    with pytest.raises(HubFetchError) as e:
        fetch_hf_model(SIGLIP)
    message = str(e.value)
    assert SIGLIP.repo_id in message and "not found" in message and "checks/registry.py" in message


@pytest.mark.parametrize("token, status", [(None, 401), ("hf_not_granted_1234", 403)])
def test_gated_repo_explains_how_to_get_access(hub: FakeHub, monkeypatch: pytest.MonkeyPatch,
                                               token: str | None, status: int) -> None:
    hub.add_repo(SIGLIP.repo_id, siglip_repo())
    hub.gate(SIGLIP.repo_id, {SECRET})
    if token:
        monkeypatch.setenv("HF_TOKEN", token)
    with pytest.raises(HubFetchError) as e:
        fetch_hf_model(SIGLIP)
    message = str(e.value)
    assert f"HTTP {status}" in message and "gated" in message and "accept its conditions" in message
    assert "HF_TOKEN" in message and (token is None or token not in "".join(traceback.format_exception(e.value)))
    assert not hub.downloads(SIGLIP.repo_id, "model.safetensors")


def test_gated_repo_with_a_granted_token_downloads_and_the_token_stays_on_the_hub(
        hub: FakeHub, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    hub.add_repo(SIGLIP.repo_id, siglip_repo())
    hub.gate(SIGLIP.repo_id, {SECRET})
    monkeypatch.setenv("HF_TOKEN", SECRET)

    fetch_hf_model(SIGLIP)

    assert all(r.authorized for r in hub.log if r.server == "hub")
    assert [r.authorized for r in hub.log if r.server == "cdn"] == [False]  # not forwarded to the "CDN"
    assert SECRET not in "".join(capfd.readouterr())


def test_dropped_connection_is_resumed_by_huggingface_hub(hub: FakeHub) -> None:
    hub.add_repo(SIGLIP.repo_id, siglip_repo())
    hub.drop(SIGLIP.repo_id, "model.safetensors", after=50_000)

    result = fetch_hf_model(SIGLIP)

    assert (result.path / "model.safetensors").read_bytes() == hub.file(SIGLIP.repo_id, "model.safetensors").data
    cut, retry = hub.downloads(SIGLIP.repo_id, "model.safetensors")
    assert cut.body_bytes == 50_000 and retry.body_bytes > 0  # huggingface_hub's own retry (it sleeps 1 s)


def test_corrupted_content_is_caught_removed_and_refetched(hub: FakeHub, tmp_path: Path) -> None:
    hub.add_repo(SIGLIP.repo_id, siglip_repo())
    hub.corrupt(SIGLIP.repo_id, "model.safetensors")
    hub.corrupt(SIGLIP.repo_id, "config.json")

    with pytest.raises(HubFetchError) as e:
        fetch_hf_model(SIGLIP)

    message = str(e.value)
    assert "config.json, model.safetensors" in message and "does not match" in message and "rerun" in message
    folder = hf_cache(tmp_path) / "models--google--siglip2-base-patch16-224"
    for name in ("model.safetensors", "config.json"):
        assert not (folder / "blobs" / hub.file(SIGLIP.repo_id, name).etag).exists()
    hub.heal()
    result = fetch_hf_model(SIGLIP)
    assert (result.path / "config.json").read_bytes() == hub.file(SIGLIP.repo_id, "config.json").data
    assert len(hub.downloads(SIGLIP.repo_id, "tokenizer.json")) == 1  # the good files were kept


def test_a_needed_file_missing_from_the_repo_is_named(hub: FakeHub) -> None:
    files = siglip_repo()
    del files["tokenizer_config.json"]
    hub.add_repo(SIGLIP.repo_id, files)
    with pytest.raises(HubFetchError, match=r"has no tokenizer_config\.json"):
        fetch_hf_model(SIGLIP)


def test_unreachable_endpoint(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: connection refused
    with pytest.raises(HubFetchError, match=r"could not reach http://127\.0\.0\.1:9 .*ConnectError"):
        fetch_hf_model(SIGLIP)


def test_env_vars_set_before_import_are_honoured(tmp_path: Path) -> None:
    """As from a shell: HF_ENDPOINT and HF_HOME exported, huggingface_hub imported fresh, no cache_dir."""
    with FakeHub() as fake:
        repo = fake.add_repo(SIGLIP.repo_id, siglip_repo())
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
        env.update(HF_ENDPOINT=fake.url, HF_HOME=str(tmp_path / "home"), PYTHONPATH=str(REPO_ROOT))
        script = ("from core.registry import ASSETS; from fetchers.hub import fetch_hf_model\n"
                  "from tests.fakes.network import loopback_only\n"
                  "with loopback_only() as refused:\n"
                  "    print(fetch_hf_model(ASSETS['siglip2_base'].facts).path)\n"
                  "assert refused == [], refused\n")
        out = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        snapshot = tmp_path / "home" / "hub" / "models--google--siglip2-base-patch16-224" / "snapshots" / repo.sha
        assert out.stdout.strip().splitlines()[-1] == str(snapshot)
        assert all(len(fake.downloads(SIGLIP.repo_id, n)) == 1 for n in SIGLIP.files)
        # huggingface_hub 2.4 asks the import-time endpoint for its agent list (User-Agent): the fake, not the internet
        assert fake.requests(contains="/api/agent-harnesses")


def test_the_loopback_guard_refuses_other_hosts() -> None:
    import requests

    with loopback_only() as refused, pytest.raises(requests.ConnectionError):
        requests.get("https://huggingface.co/api/models/x", timeout=1)
    assert refused == ["resolve huggingface.co"]
