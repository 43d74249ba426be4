"""fetchers.hub with the real huggingface_hub (and open_clip) against the fake Hub of tests/fakes/hub_server.py.

huggingface_hub reads HF_ENDPOINT, HF_HUB_CACHE, HF_HUB_OFFLINE, ... once, when ``huggingface_hub.constants`` is
first imported, and this process imported it long ago (the plugin). So the in-process tests set the env vars
the fetcher reads at call time (HF_ENDPOINT, HF_HOME) and set the few import-time constants the way those env
vars would have (offline mode, telemetry, token file); the subprocess tests run with plain env vars set before
the import, as a user's shell would.

The fake weights are small, so the tests pin them: ``pinned`` replaces the registry's pins (revision, size,
sha256 of the weights file) with the fake repo's, as the tiny world does with its own models.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shlex
import subprocess
import sys
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from fetchers.hub import HubFetchError, fetch_hf_model
from preflight_core.registry import ASSETS, ModelFacts
from tests.fakes.hub_server import FakeHub, HubRepo
from tests.fakes.network import loopback_only

REPO_ROOT = Path(__file__).resolve().parents[1]
SIGLIP_REAL: ModelFacts = ASSETS["siglip2_base"].facts  # type: ignore[assignment]
CLIP_REAL: ModelFacts = ASSETS["clip_b32"].facts  # type: ignore[assignment]
SIGLIP = dataclasses.replace(SIGLIP_REAL, revision="", weights_size=0, weights_sha256="")  # pinned per test
CLIP = dataclasses.replace(CLIP_REAL, revision="", weights_size=0, weights_sha256="")
SECRET = "hf_TESTSECRET_do_not_print_4711"


def siglip_repo(weights: bytes | None = None) -> dict[str, bytes]:
    files = {name: json.dumps({"file": name}).encode() for name in SIGLIP.files if isinstance(name, str)}
    files["model.safetensors"] = weights if weights is not None else fake_safetensors()
    # present in the repo, not needed by the model: must never be requested
    files.update({"README.md": b"# card\n", ".gitattributes": b"*.safetensors filter=lfs\n",
                  "tf_model.h5": os.urandom(50_000), "tokenizer.model": os.urandom(30_000)})
    return files


def fake_safetensors(n: int = 50_000) -> bytes:
    """A structurally valid safetensors file of random float32 values (the cache check parses the header)."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}}).encode()
    return len(header).to_bytes(8, "little") + header + os.urandom(4 * n)


def pinned(facts: ModelFacts, repo: HubRepo, revision: str | None = None, weights: bytes | None = None) -> ModelFacts:
    """``facts`` pinned to the fake repo: its commit (or ``revision``), and the weights at that commit (or ``weights``)."""
    commit = revision or repo.sha
    data = weights if weights is not None else repo.commits[commit][facts.weights_file].data
    return dataclasses.replace(facts, revision=commit, weights_size=len(data),
                               weights_sha256=hashlib.sha256(data).hexdigest())


def hf_cache(tmp_path: Path) -> Path:
    return tmp_path / "hf" / "hub"


def repo_folder(tmp_path: Path, repo_id: str = SIGLIP.repo_id) -> Path:
    return hf_cache(tmp_path) / ("models--" + repo_id.replace("/", "--"))


def offline_resolve(repo_id: str, filename: str, cache: Path) -> Path:
    """What the research code's offline call finds: no revision argument, so refs/main."""
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(repo_id, filename, cache_dir=cache, local_files_only=True))


def test_siglip2_snapshot_lands_in_the_cache_layout_once(hub: FakeHub, tmp_path: Path) -> None:
    repo = hub.add_repo(SIGLIP.repo_id, siglip_repo())
    facts = pinned(SIGLIP, repo)

    result = fetch_hf_model(facts)

    folder = repo_folder(tmp_path)
    assert result.path == folder / "snapshots" / repo.sha and not result.already_present
    assert (folder / "refs" / "main").read_text() == repo.sha
    assert result.revision == repo.sha and result.weights_sha256 == facts.weights_sha256 and result.notes == ()
    assert sorted(p.name for p in result.path.iterdir()) == sorted(SIGLIP.files)
    for name in SIGLIP.files:
        link = result.path / name
        f = hub.file(SIGLIP.repo_id, name)
        assert link.is_symlink() and os.readlink(link) == f"../../blobs/{f.etag}"  # sha256 for LFS, git oid else
        assert link.read_bytes() == f.data
        assert len(hub.downloads(SIGLIP.repo_id, name)) == 1, name
    for unneeded in ("README.md", ".gitattributes", "tf_model.h5", "tokenizer.model"):
        assert not any(unneeded in r.path for r in hub.log), unneeded
    assert not hub.requests(contains="/api/")  # the commit is pinned: no model info, no tree listing
    assert all(f"/resolve/{repo.sha}/" in r.path for r in hub.log if r.server == "hub")  # never "main"
    assert result.bytes_downloaded == sum(len(hub.file(SIGLIP.repo_id, n).data) for n in SIGLIP.files)
    assert not any(r.authorized for r in hub.log)  # no token configured, none sent
    assert [r.status for r in hub.log if r.server == "cdn"] == [200]  # only model.safetensors is LFS here

    hub.clear_log()
    again = fetch_hf_model(facts)
    assert again.already_present and again.path == result.path and again.bytes_downloaded == 0
    assert again.message() == "already cached"
    assert hub.log == []  # the second call does not even ask the Hub


def test_concurrent_fetches_download_each_file_once(hub: FakeHub) -> None:
    facts = pinned(SIGLIP, hub.add_repo(SIGLIP.repo_id, siglip_repo()))
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: fetch_hf_model(facts), range(3)))
    assert sorted(r.already_present for r in results) == [False, True, True]
    assert all(len(hub.downloads(SIGLIP.repo_id, n)) == 1 for n in SIGLIP.files)


# --- the published weights and refs/main --------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_siglip() -> dict[str, bytes]:
    """A tiny random SiglipModel as save_pretrained writes it (config.json, model.safetensors), plus stand-ins."""
    import tempfile

    from transformers import SiglipConfig, SiglipModel

    config = SiglipConfig(
        text_config={"vocab_size": 300, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 64},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 16})
    with tempfile.TemporaryDirectory() as tmp:
        SiglipModel(config).save_pretrained(tmp)
        files = {name: Path(tmp, name).read_bytes() for name in ("config.json", "model.safetensors")}
    files.update({name: json.dumps({"file": name}).encode()
                  for name in ("preprocessor_config.json", "tokenizer.json", "tokenizer_config.json")})
    return files


@pytest.mark.torch  # tiny models
def test_pinned_commit_is_fetched_and_refs_main_names_it_although_main_moved_on(
        hub: FakeHub, tmp_path: Path, tiny_siglip: dict[str, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    """The Hub's main serves a later commit with other weights; the fetch takes the pinned one, and the plain
    offline calls -- hf_hub_download and AutoModel.from_pretrained without a revision -- load the pinned weights."""
    import torch
    from huggingface_hub import constants, try_to_load_from_cache
    from safetensors.torch import load as load_safetensors
    from transformers import AutoModel

    repo = hub.add_repo(SIGLIP.repo_id, tiny_siglip)
    published = repo.sha
    newer = hub.add_revision(SIGLIP.repo_id, {**tiny_siglip, "model.safetensors": fake_safetensors()}, main=True)
    facts = pinned(SIGLIP, repo, revision=published)
    assert hub.repos[SIGLIP.repo_id].sha == newer != published

    result = fetch_hf_model(facts)

    folder = repo_folder(tmp_path)
    assert (folder / "refs" / "main").read_text() == published and result.revision == published
    assert not (folder / "snapshots" / newer).exists()
    assert not any(newer in r.path for r in hub.log)
    weights = offline_resolve(SIGLIP.repo_id, "model.safetensors", hf_cache(tmp_path))
    assert weights.resolve().name == facts.weights_sha256 and weights.read_bytes() == tiny_siglip["model.safetensors"]
    assert Path(try_to_load_from_cache(SIGLIP.repo_id, "config.json", cache_dir=hf_cache(tmp_path))).read_bytes() \
        == tiny_siglip["config.json"]

    hub.clear_log()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # the research code, offline
    model = AutoModel.from_pretrained(SIGLIP.repo_id, cache_dir=hf_cache(tmp_path), local_files_only=True)
    expected = load_safetensors(tiny_siglip["model.safetensors"])
    state = model.state_dict()
    assert type(model).__name__ == "SiglipModel" and hub.log == []
    for name, tensor in expected.items():
        assert torch.equal(state[name], tensor), name


@pytest.mark.parametrize("pinned_commit_on_hub", [True, False], ids=["pinned-commit-other-weights", "main-only"])
def test_other_weights_than_the_pin_are_refused_naming_both_digests(
        hub: FakeHub, tmp_path: Path, pinned_commit_on_hub: bool) -> None:
    """A re-upload under the pinned commit id, or a mirror that only has main with other weights: refused before
    a byte of the weights is downloaded; nothing offline loading could pick up is left behind."""
    served = fake_safetensors()
    repo = hub.add_repo(SIGLIP.repo_id, siglip_repo(served))
    published = fake_safetensors()
    revision = repo.sha if pinned_commit_on_hub else "75de2d55ec2d0b4efc50b3e9ad70dba96a7b2fa2"
    facts = pinned(SIGLIP, repo, revision=revision, weights=published)

    with pytest.raises(HubFetchError) as e:
        fetch_hf_model(facts)

    message = str(e.value)
    found, want = hashlib.sha256(served).hexdigest(), facts.weights_sha256
    assert f"found {found[:16]}… ({len(served):,} B), published {want[:16]}… ({len(published):,} B)" in message
    assert "other weights than the published ones" in message and "Refused before downloading" in message
    assert e.value.fix.text.startswith("check HF_ENDPOINT") and "Fix:" not in e.value.message
    assert not hub.downloads(SIGLIP.repo_id, "model.safetensors") and not hub.downloads(SIGLIP.repo_id, "config.json")
    folder = repo_folder(tmp_path)
    assert not (folder / "refs" / "main").exists() and not list(folder.glob("snapshots/*/*"))
    assert not (folder / "blobs").exists() or not any((folder / "blobs").iterdir())


def test_the_cli_exits_1_when_the_hub_serves_other_weights(hub: FakeHub, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m fetchers --siglip2` with the registry's real pins against a Hub serving other weights."""
    from fetchers.__main__ import main

    for name in ("siglip2_base", "siglip2_so400m"):
        hub.add_repo(ASSETS[name].location, siglip_repo())

    assert main(["--siglip2", "--data-root", str(tmp_path / "data")]) == 1

    err = capsys.readouterr().err
    for name in ("siglip2_base", "siglip2_so400m"):
        real = ASSETS[name].facts
        served = hub.file(real.repo_id, "model.safetensors").sha256
        assert f"{name}: FAILED: {real.repo_id}@{hub.repos[real.repo_id].sha[:12]}" in err
        assert f"found {served[:16]}…" in err and f"published {real.weights_sha256[:16]}… ({real.weights_size:,} B)" in err
        assert not hub.downloads(real.repo_id, "model.safetensors")
    assert "2 of 2 fetches failed" in err


def test_a_refs_main_on_other_weights_is_moved_to_the_published_snapshot_and_the_old_one_kept(
        hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The user once loaded a later main (other weights) online: refs/main names it. The fetch points refs/main
    at the published snapshot, says so, and keeps the other snapshot, loadable by its revision."""
    files = siglip_repo()
    repo = hub.add_repo(SIGLIP.repo_id, files)
    published = repo.sha
    other = fake_safetensors()
    newer = hub.add_revision(SIGLIP.repo_id, {**files, "model.safetensors": other}, main=True)
    unpinned = fetch_hf_model(SIGLIP, log=None)  # no pin: main, as the research code's online call does
    folder = repo_folder(tmp_path)
    assert unpinned.revision == newer == (folder / "refs" / "main").read_text()
    facts = pinned(SIGLIP, repo, revision=published)

    result = fetch_hf_model(facts)

    assert (folder / "refs" / "main").read_text() == published and not result.already_present
    other_sha = hashlib.sha256(other).hexdigest()
    note = (f"refs/main moved from {newer[:12]} (whose model.safetensors is {other_sha[:12]}…, not the published "
            f"{facts.weights_sha256[:12]}…) to {published[:12]}; snapshot {newer[:12]} is still in the cache "
            f"(load it with revision='{newer}')")
    assert result.notes == (note,) and note in result.message()
    assert f"{SIGLIP.repo_id}: {note}" in capsys.readouterr().out
    assert (folder / "snapshots" / newer / "model.safetensors").read_bytes() == other
    assert offline_resolve(SIGLIP.repo_id, "model.safetensors", hf_cache(tmp_path)).resolve().name \
        == facts.weights_sha256
    for name in ("config.json", "tokenizer.json"):  # same content in both commits: one blob, fetched once
        assert len(hub.downloads(SIGLIP.repo_id, name)) == 1, name


def test_a_refs_main_holding_the_published_weights_stays_and_is_completed(hub: FakeHub, tmp_path: Path) -> None:
    """refs/main at a commit other than the pinned one (a README edit) with the published weights: kept; a file
    missing there is fetched at that commit; refs/main never leaves the published weights."""
    files = siglip_repo()
    repo = hub.add_repo(SIGLIP.repo_id, files)
    published = repo.sha
    newer = hub.add_revision(SIGLIP.repo_id, {**files, "README.md": b"# card, edited\n"}, main=True)
    fetch_hf_model(SIGLIP, log=None)  # unpinned: main = newer
    folder = repo_folder(tmp_path)
    (folder / "snapshots" / newer / "tokenizer.json").unlink()
    facts = pinned(SIGLIP, repo, revision=published)
    hub.clear_log()

    result = fetch_hf_model(facts)

    assert (folder / "refs" / "main").read_text() == newer == result.revision
    assert (folder / "snapshots" / newer / "tokenizer.json").read_bytes() == files["tokenizer.json"]
    assert not (folder / "snapshots" / published).exists()
    assert {r.path for r in hub.log if r.server == "hub"} <= {
        f"/{SIGLIP.repo_id}/resolve/{newer}/{n}" for n in ("model.safetensors", "tokenizer.json")}
    again = fetch_hf_model(facts)
    assert again.already_present and again.notes == (
        f"refs/main is at {newer[:12]}, not the pinned revision {published[:12]}, but its model.safetensors is the "
        "published file",)


# --- repairing the cache -------------------------------------------------------------------------
def test_an_edited_cached_config_json_is_replaced_and_named(hub: FakeHub, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 7 item 6: config.json edited by hand in the cache -> `python -m fetchers --siglip2` replaces it."""
    from fetchers.__main__ import main

    for name in ("siglip2_base", "siglip2_so400m"):  # the CLI reads the registry: pin it to the fake repos
        asset = ASSETS[name]
        repo = hub.add_repo(asset.location, siglip_repo())
        monkeypatch.setitem(ASSETS, name, dataclasses.replace(asset, facts=pinned(asset.facts, repo)))
    args = ["--siglip2", "--data-root", str(tmp_path / "data")]
    assert main(args) == 0
    capsys.readouterr()
    config = repo_folder(tmp_path) / "snapshots" / hub.repos[SIGLIP.repo_id].sha / "config.json"
    blob = config.resolve()
    edited = config.read_bytes().replace(b"config.json", b"config.jsoN")  # still valid JSON, same size
    blob.write_bytes(edited)

    assert main(args) == 0

    out = capsys.readouterr().out
    assert f"{SIGLIP.repo_id}: replaced config.json in snapshot {hub.repos[SIGLIP.repo_id].sha[:12]}" in out
    assert f"it was blob {blob.name[:12]}…: its content no longer matches its etag" in out
    assert config.read_bytes() == hub.file(SIGLIP.repo_id, "config.json").data
    assert len(hub.downloads(SIGLIP.repo_id, "config.json")) == 2
    assert len(hub.downloads(SIGLIP.repo_id, "model.safetensors")) == 1  # the rest is not fetched again
    assert "siglip2_so400m: already cached" in out
    assert main(args) == 0 and "replaced" not in capsys.readouterr().out


@pytest.mark.torch
@pytest.mark.parametrize("damage", ["truncated", "blob removed"])
def test_a_damaged_cached_safetensors_blob_is_downloaded_again(hub: FakeHub, tmp_path: Path, damage: str) -> None:
    repo = hub.add_repo(SIGLIP.repo_id, siglip_repo())
    facts = pinned(SIGLIP, repo)
    first = fetch_hf_model(facts)
    weights = first.path / "model.safetensors"
    blob = weights.resolve()
    if damage == "truncated":
        os.truncate(blob, blob.stat().st_size // 2)  # what `pytest` reports as "truncated download"
    else:
        blob.unlink()  # what the --deep fix does first: a dangling link

    result = fetch_hf_model(facts)

    assert not result.already_present and result.bytes_downloaded == facts.weights_size
    why = (f"{facts.weights_size // 2:,} B, the published file has {facts.weights_size:,} B: truncated or altered"
           if damage == "truncated" else f"its blob {facts.weights_sha256[:12]}… is gone (dangling link)")
    assert result.notes == (f"replaced model.safetensors in snapshot {repo.sha[:12]} (it was blob "
                            f"{facts.weights_sha256[:12]}…: {why})",)
    assert weights.read_bytes() == hub.file(SIGLIP.repo_id, "model.safetensors").data
    assert len(hub.downloads(SIGLIP.repo_id, "model.safetensors")) == 2
    assert not list(weights.parent.glob(".*preflight*"))  # the moved-aside link is gone


def test_a_repair_that_fails_leaves_the_cache_as_it_was(hub: FakeHub, tmp_path: Path) -> None:
    repo = hub.add_repo(SIGLIP.repo_id, siglip_repo())
    facts = pinned(SIGLIP, repo)
    snapshot = fetch_hf_model(facts).path
    blob = (snapshot / "model.safetensors").resolve()
    os.truncate(blob, 1000)
    hub.corrupt(SIGLIP.repo_id, "model.safetensors")  # the new download is not the published file either

    with pytest.raises(HubFetchError, match=r"model\.safetensors: found [0-9a-f]{16}…, published"):
        fetch_hf_model(facts)

    assert os.readlink(snapshot / "model.safetensors") == f"../../blobs/{facts.weights_sha256}"  # put back
    assert not blob.exists()  # the blob this run wrote was not the published file: removed
    assert not list(snapshot.glob(".*preflight*"))
    assert not (repo_folder(tmp_path) / "snapshots" / repo.sha / "model.safetensors").exists()  # dangling: no load
    hub.heal()
    assert fetch_hf_model(facts).notes[0].startswith("replaced model.safetensors")


@pytest.mark.torch
@pytest.mark.parametrize("content", ['{"mine": true}', '{"mine": tr'], ids=["valid", "broken"])
def test_files_outside_the_hf_cache_are_never_touched(hub: FakeHub, tmp_path: Path, content: str) -> None:
    """A snapshot link to a user's own file (not a blob): a valid one is left alone (nothing to compare it with);
    a broken one is replaced by the published file -- the link in the cache, never the user's file."""
    repo = hub.add_repo(SIGLIP.repo_id, siglip_repo())
    facts = pinned(SIGLIP, repo)
    snapshot = fetch_hf_model(facts).path
    outside = tmp_path / "my_config.json"
    outside.write_text(content)
    (snapshot / "config.json").unlink()
    (snapshot / "config.json").symlink_to(outside)

    result = fetch_hf_model(facts)

    assert outside.read_text() == content
    if content.endswith("}"):
        assert result.already_present and os.readlink(snapshot / "config.json") == str(outside)
    else:
        assert result.notes[0].startswith("replaced config.json") and "not valid JSON" in result.notes[0]
        assert f"it was a link to {outside}" in result.notes[0]
        assert (snapshot / "config.json").read_bytes() == hub.file(SIGLIP.repo_id, "config.json").data


# --- offline mode ------------------------------------------------------------------------------
def test_offline_mode_is_refused_with_the_command_that_works(hub: FakeHub, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    facts = pinned(SIGLIP, hub.add_repo(SIGLIP.repo_id, siglip_repo()))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # what HF_HUB_OFFLINE=1 sets at import

    with pytest.raises(HubFetchError) as e:
        fetch_hf_model(facts)

    message = str(e.value)
    assert "HF_HUB_OFFLINE=1 is set" in e.value.message and "no requests" in e.value.message
    assert e.value.fix.text.startswith("HF_HUB_OFFLINE=0 python -m fetchers --siglip2 (")  # kept apart for the report
    assert "Fix: HF_HUB_OFFLINE=0 python -m fetchers --siglip2" in message
    assert hub.log == []
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # a complete cache needs no network, offline or not
    fetch_hf_model(facts)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert fetch_hf_model(facts).already_present


def test_the_printed_offline_fix_runs_online_in_a_fresh_process(tmp_path: Path) -> None:
    """Run as printed, from a shell with HF_HUB_OFFLINE=1 (and TRANSFORMERS_OFFLINE=1) exported: the command reaches
    the Hub. (It then fails, correctly: the fake Hub cannot serve the real published weights.)"""
    from fetchers.hub import offline_error

    fix = offline_error(SIGLIP.repo_id, "x").fix.text.split(" (", 1)[0]
    assert fix == "HF_HUB_OFFLINE=0 python -m fetchers --siglip2"
    with FakeHub() as fake:
        fake.add_repo(SIGLIP.repo_id, siglip_repo())
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "PREFLIGHT_"))}
        env.update(HF_ENDPOINT=fake.url, HF_HOME=str(tmp_path / "home"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                   HF_HUB_DISABLE_TELEMETRY="1", PYTHON=sys.executable)
        command = f"{fix.replace('python', shlex.quote(sys.executable), 1)} --data-root {shlex.quote(str(tmp_path))}"
        out = subprocess.run(["bash", "-c", command], env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=120)
        assert "HF_HUB_OFFLINE" not in out.stderr, out.stderr
        assert fake.requests("HEAD", contains=f"/{SIGLIP.repo_id}/resolve/"), out.stderr  # online
        assert "serves other weights than the published ones" in out.stderr and out.returncode == 1


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
    from preflight_core.model_libraries import _open_clip_weights

    facts = ASSETS[asset].facts
    assert _open_clip_weights(facts) == (facts.repo_id, ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"))
    assert facts.weights_file == "open_clip_model.safetensors"  # the pinned file is the one open_clip tries first


@pytest.mark.torch  # open_clip
def test_clip_weights_land_where_open_clip_finds_them_offline(hub: FakeHub, tmp_path: Path, tiny_clip: dict,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import open_clip
    import torch
    from huggingface_hub import constants

    repo = hub.add_repo(CLIP.repo_id, {"open_clip_model.safetensors": tiny_clip["safetensors"],
                                       "open_clip_pytorch_model.bin": tiny_clip["bin"], "README.md": b"card"})
    facts = pinned(CLIP, repo)
    hub.add_revision(CLIP.repo_id, {"open_clip_model.safetensors": fake_safetensors()}, main=True)  # main moved on
    cache = tmp_path / "elsewhere"  # an explicit cache_dir wins over HF_HOME

    result = fetch_hf_model(facts, cache_dir=cache)

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


@pytest.mark.torch  # open_clip
def test_pinned_clip_is_not_satisfied_by_the_pickle(hub: FakeHub, tiny_clip: dict) -> None:
    """A repo with only open_clip_pytorch_model.bin: no published digest for it, so no fetch of it either."""
    repo = hub.add_repo(CLIP.repo_id, {"open_clip_pytorch_model.bin": tiny_clip["bin"]})
    facts = dataclasses.replace(CLIP, revision=repo.sha, weights_size=123, weights_sha256="ab" * 32)
    with pytest.raises(HubFetchError, match=r"has none of open_clip_model\.safetensors at [0-9a-f]{40}"):
        fetch_hf_model(facts)
    assert not hub.downloads(CLIP.repo_id, "open_clip_pytorch_model.bin")


@pytest.mark.torch  # open_clip
def test_unpinned_clip_falls_back_to_the_pickle_when_the_repo_has_no_safetensors(hub: FakeHub,
                                                                                 tiny_clip: dict) -> None:
    hub.add_repo(CLIP.repo_id, {"open_clip_pytorch_model.bin": tiny_clip["bin"]})

    result = fetch_hf_model(CLIP)

    assert result.path.name == "open_clip_pytorch_model.bin" and result.path.read_bytes() == tiny_clip["bin"]
    assert [r.status for r in hub.requests("HEAD")][:2] == [404, 302]  # safetensors asked first, as open_clip does
    hub.clear_log()
    assert fetch_hf_model(CLIP).already_present and hub.log == []


# --- faults ----------------------------------------------------------------------------------
def test_missing_repo_names_the_repo_and_the_fix(hub: FakeHub) -> None:
    with pytest.raises(HubFetchError) as e:
        fetch_hf_model(SIGLIP)
    message = str(e.value)
    assert SIGLIP.repo_id in message and "not found" in message and "preflight_core/registry.py" in message


@pytest.mark.parametrize("token, status, why", [
    (None, 401, "no token was sent"),
    ("hf_expired_5678", 401, "the token sent was not accepted"),  # issue 17.9: it said "no token was sent"
    ("hf_not_granted_1234", 403, "has not been granted access"),
])
def test_gated_repo_explains_how_to_get_access(hub: FakeHub, monkeypatch: pytest.MonkeyPatch,
                                               token: str | None, status: int, why: str) -> None:
    facts = pinned(SIGLIP, hub.add_repo(SIGLIP.repo_id, siglip_repo()))
    hub.gate(SIGLIP.repo_id, {SECRET})
    if token:
        monkeypatch.setenv("HF_TOKEN", token)
    with pytest.raises(HubFetchError) as e:
        fetch_hf_model(facts)
    message = str(e.value)
    assert f"HTTP {status}" in message and "gated" in message and "accept its conditions" in message
    assert why in message, message
    assert "HF_TOKEN" in message and (token is None or token not in "".join(traceback.format_exception(e.value)))
    assert not hub.downloads(SIGLIP.repo_id, "model.safetensors")


def test_gated_repo_with_a_granted_token_downloads_and_the_token_stays_on_the_hub(
        hub: FakeHub, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    facts = pinned(SIGLIP, hub.add_repo(SIGLIP.repo_id, siglip_repo()))
    hub.gate(SIGLIP.repo_id, {SECRET})
    monkeypatch.setenv("HF_TOKEN", SECRET)

    fetch_hf_model(facts)

    assert all(r.authorized for r in hub.log if r.server == "hub")
    assert [r.authorized for r in hub.log if r.server == "cdn"] == [False]  # not forwarded to the "CDN"
    assert SECRET not in "".join(capfd.readouterr())


def test_dropped_connection_is_resumed_by_huggingface_hub(hub: FakeHub) -> None:
    facts = pinned(SIGLIP, hub.add_repo(SIGLIP.repo_id, siglip_repo()))
    hub.drop(SIGLIP.repo_id, "model.safetensors", after=50_000)

    result = fetch_hf_model(facts)

    assert (result.path / "model.safetensors").read_bytes() == hub.file(SIGLIP.repo_id, "model.safetensors").data
    cut, retry = hub.downloads(SIGLIP.repo_id, "model.safetensors")
    assert cut.body_bytes == 50_000 and retry.body_bytes > 0  # huggingface_hub's own retry (it sleeps 1 s)


def test_corrupted_content_is_caught_removed_and_refetched(hub: FakeHub, tmp_path: Path) -> None:
    facts = pinned(SIGLIP, hub.add_repo(SIGLIP.repo_id, siglip_repo()))
    hub.corrupt(SIGLIP.repo_id, "model.safetensors")
    hub.corrupt(SIGLIP.repo_id, "config.json")

    with pytest.raises(HubFetchError) as e:
        fetch_hf_model(facts)

    message = str(e.value)
    assert "config.json, model.safetensors" in message and "does not match" in message and "rerun" in message
    got = hashlib.sha256(bytes(b ^ 0xFF for b in hub.file(SIGLIP.repo_id, "model.safetensors").data[:64])
                         + hub.file(SIGLIP.repo_id, "model.safetensors").data[64:]).hexdigest()
    assert f"model.safetensors: found {got[:16]}…, published {facts.weights_sha256[:16]}…" in message
    folder = repo_folder(tmp_path)
    for name in ("model.safetensors", "config.json"):
        assert not (folder / "blobs" / hub.file(SIGLIP.repo_id, name).etag).exists()
        assert not os.path.lexists(folder / "snapshots" / facts.revision / name)
    assert not (folder / "refs" / "main").exists()
    hub.heal()
    result = fetch_hf_model(facts)
    assert (result.path / "config.json").read_bytes() == hub.file(SIGLIP.repo_id, "config.json").data
    assert len(hub.downloads(SIGLIP.repo_id, "tokenizer.json")) == 1  # the good files were kept


def test_a_needed_file_missing_from_the_repo_is_named(hub: FakeHub) -> None:
    files = siglip_repo()
    del files["tokenizer_config.json"]
    facts = pinned(SIGLIP, hub.add_repo(SIGLIP.repo_id, files))
    with pytest.raises(HubFetchError, match=r"has no tokenizer_config\.json"):
        fetch_hf_model(facts)


def test_unreachable_endpoint(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: connection refused
    with pytest.raises(HubFetchError, match=r"could not reach http://127\.0\.0\.1:9 .*ConnectError"):
        fetch_hf_model(SIGLIP)


def test_env_vars_set_before_import_are_honoured(tmp_path: Path) -> None:
    """As from a shell: HF_ENDPOINT and HF_HOME exported, huggingface_hub imported fresh, no cache_dir."""
    with FakeHub() as fake:
        repo = fake.add_repo(SIGLIP.repo_id, siglip_repo())
        facts = pinned(SIGLIP, repo)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
        env.update(HF_ENDPOINT=fake.url, HF_HOME=str(tmp_path / "home"), PYTHONPATH=str(REPO_ROOT))
        script = ("import dataclasses\n"
                  "from preflight_core.registry import ASSETS; from fetchers.hub import fetch_hf_model\n"
                  "from tests.fakes.network import loopback_only\n"
                  f"facts = dataclasses.replace(ASSETS['siglip2_base'].facts, revision={facts.revision!r}, "
                  f"weights_size={facts.weights_size}, weights_sha256={facts.weights_sha256!r})\n"
                  "with loopback_only() as refused:\n"
                  "    print(fetch_hf_model(facts).path)\n"
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


def test_a_redirect_to_another_host_is_reported_as_one_without_credentials(hub: FakeHub) -> None:
    """Issue 17.9: a 302 to another host read as "found no sha256 (no ETag)"; it says where it was sent."""
    facts = pinned(SIGLIP, hub.add_repo(SIGLIP.repo_id, siglip_repo()))
    hub.redirects[(SIGLIP.repo_id, "model.safetensors")] = \
        "http://mirror-user:s3cret@elsewhere.example/weights/model.safetensors?X-Amz-Signature=abcdef"
    with pytest.raises(HubFetchError) as e:
        fetch_hf_model(facts)
    message = str(e.value)
    assert "redirected to http://elsewhere.example/weights/model.safetensors" in message, message
    assert "s3cret" not in message and "abcdef" not in message and "mirror-user" not in message
