"""`pytest --fetch-missing` end to end: a tiny world emptied of its assets, refilled from fake servers.

The metadata comes from the fake static server (PREFLIGHT_MIRROR), the models from the fake Hub
(HF_ENDPOINT), COCO from the fake Kaggle API, and ImageNet val from a tar in <data root>/downloads.
The real clients do the work; the servers' request logs prove that each artifact is fetched once.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from checks.tiny import build_tiny_world, tiny_labels
from core.registry import IMAGENET_META_FILES
from tests.checkrun import clean_environment, run_checks
from tests.conftest import KAGGLE_USER as USER
from tests.fakes.hub_server import FakeHub
from tests.fakes.imagenet_tar import write_val_tar
from tests.fakes.kaggle_server import FakeKaggle

KEY = "kaggle-key-for-tests"


@pytest.fixture
def emptied_world(tmp_path: Path, monkeypatch, http_mirror, hub: FakeHub, kaggle: FakeKaggle) -> Path:
    """A tiny world whose assets now live only on the fake servers (and in a downloaded tar)."""
    clean_environment(monkeypatch)  # then put back what the fake-server fixtures had set
    monkeypatch.setenv("PREFLIGHT_MIRROR", http_mirror.url)
    monkeypatch.setenv("PREFLIGHT_KAGGLE_ENDPOINT", kaggle.url)
    monkeypatch.setenv("KAGGLE_USERNAME", USER)
    monkeypatch.setenv("KAGGLE_KEY", KEY)
    kaggle.add_user(USER, KEY)
    world = build_tiny_world(tmp_path / "world")
    root = tmp_path / "world"
    meta = world.data_root / "imagenet_meta"
    for remote in IMAGENET_META_FILES.values():
        http_mirror.serve_url(remote.urls[0], (meta / remote.filename).read_bytes())
    shutil.rmtree(meta)
    shutil.rmtree(world.data_root / "imagenet_val")
    (world.data_root / "downloads").mkdir()
    write_val_tar(world.data_root / "downloads" / "ILSVRC2012_img_val.tar", tiny_labels())
    coco = world.data_root / "coco_val2017"
    shutil.rmtree(coco.resolve())
    coco.unlink()
    for repo in sorted(world.hf_cache.glob("models--*")):
        repo_id = repo.name.removeprefix("models--").replace("--", "/", 1)
        snapshot = next((repo / "snapshots").iterdir())
        hub.add_repo(repo_id, {p.name: p.read_bytes() for p in snapshot.iterdir()})
        shutil.rmtree(repo)
    http_mirror.reset()
    hub.clear_log()
    kaggle.clear_log()
    return root


def assert_each_fetched_once(http_mirror, hub: FakeHub, kaggle: FakeKaggle) -> None:
    for remote in IMAGENET_META_FILES.values():
        gets = http_mirror.requests(http_mirror.mirror_path(remote.urls[0]), method="GET")
        assert len(gets) == 1, (remote.filename, gets)
    for repo_id in ("google/siglip2-base-patch16-224", "google/siglip2-so400m-patch14-384"):
        for name in ("config.json", "model.safetensors", "tokenizer.json"):
            assert len(hub.downloads(repo_id, name)) == 1, (repo_id, name)
    for repo_id in ("timm/vit_base_patch32_clip_224.openai", "timm/vit_large_patch14_clip_224.openai"):
        assert len(hub.downloads(repo_id, "open_clip_model.safetensors")) == 1, repo_id
    gets = kaggle.storage_gets()
    assert len(gets) == 5 and len({g.path for g in gets}) == 5


def test_fetch_missing_fills_an_empty_world_then_checks_pass(pytester, emptied_world, http_mirror, hub, kaggle):
    run = run_checks(pytester, "--fetch-missing", "-m", "not gpu", world=emptied_world)
    assert run.ret == 0, run.result.stdout.str()
    assert set(run.statuses().values()) == {"ready"}, run.statuses()
    assert_each_fetched_once(http_mirror, hub, kaggle)
    fetched = {a["name"]: a["fetched"] for a in run.report["assets"]}
    assert fetched["imagenet_val"].startswith("reorganized 12 images from ILSVRC2012_img_val.tar")
    assert fetched["imagenet_meta"].startswith("fetched")
    run.result.stdout.fnmatch_lines(["*preflight: fetching imagenet_meta*", "*↓ fetched*MiB in*"])

    http_mirror.reset()
    hub.clear_log()
    kaggle.clear_log()
    again = run_checks(pytester, "--fetch-missing", "-m", "not gpu", world=emptied_world)
    assert again.ret == 0
    assert http_mirror.requests() == [] and hub.requests() == [] and kaggle.log == []  # nothing fetched twice


def test_fetch_missing_under_xdist_fetches_each_artifact_once(pytester, emptied_world, http_mirror, hub, kaggle):
    run = run_checks(pytester, "--fetch-missing", "-n", "2", "-m", "not gpu and not model", world=emptied_world)
    assert run.report["ok"] is True, run.result.stdout.str()
    assert_each_fetched_once(http_mirror, hub, kaggle)


def test_only_what_the_selection_needs_is_fetched(pytester, emptied_world, http_mirror, hub, kaggle):
    run = run_checks(pytester, "--fetch-missing", "-m", "imagenet", world=emptied_world)
    assert run.ret == 0, run.result.stdout.str()
    assert hub.requests() == [] and kaggle.log == []
    assert not (Path(emptied_world) / "data" / "raw" / "coco_val2017").exists()


def test_without_the_flag_nothing_is_fetched(pytester, emptied_world, http_mirror, hub, kaggle):
    run = run_checks(pytester, "-m", "not gpu", world=emptied_world)
    assert run.ret == 1
    assert http_mirror.requests() == [] and hub.requests() == [] and kaggle.log == []
    assert run.status("imagenet_meta") == "missing"


def test_a_failed_fetch_is_reported_by_the_presence_check(pytester, emptied_world, http_mirror):
    http_mirror.files.clear()  # the mirror has nothing: every metadata URL answers 404
    run = run_checks(pytester, "--fetch-missing", "-m", "imagenet", world=emptied_world)
    assert run.status("imagenet_meta") == "missing"
    message = run.message("test_imagenet_meta.py::test_present")
    assert "--fetch-missing tried: fetch failed" in message and "404" in message


def test_imagenet_without_a_tar_explains_the_manual_steps(pytester, emptied_world):
    os.unlink(Path(emptied_world) / "data" / "raw" / "downloads" / "ILSVRC2012_img_val.tar")
    run = run_checks(pytester, "--fetch-missing", "-m", "imagenet", world=emptied_world)
    message = run.message("test_imagenet_val.py::test_present")
    assert "image-net.org" in message and "--imagenet-tar" in message


def test_empty_folders_and_partial_snapshots_are_completed(pytester, emptied_world, hub):
    data = Path(emptied_world) / "data" / "raw"
    (data / "imagenet_val").mkdir()  # as left by an interrupted copy: empty, so nothing of the user's
    (data / "coco_val2017").mkdir()
    run = run_checks(pytester, "--fetch-missing", "-m", "not gpu", world=emptied_world)
    assert run.ret == 0, run.result.stdout.str()
    repo = Path(emptied_world) / "hf" / "hub" / "models--google--siglip2-base-patch16-224"
    snapshot = next((repo / "snapshots").iterdir())
    (snapshot / "model.safetensors").resolve().unlink()  # an interrupted fetch of the weights: no blob,
    (snapshot / "model.safetensors").unlink()  # no link
    hub.clear_log()
    run = run_checks(pytester, "--fetch-missing", "-m", "siglip2", world=emptied_world)
    assert run.ret == 0, run.result.stdout.str()
    assert len(hub.downloads("google/siglip2-base-patch16-224", "model.safetensors")) == 1


def test_coco_zip_extraction_is_safe_and_atomic(tmp_path):
    import zipfile

    from fetchers.plan import FetchError, extract_coco_zip

    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("val2017/000000000139.jpg", b"\xff\xd8\xff jpeg")
    extract_coco_zip(good, tmp_path / "coco_val2017")
    assert (tmp_path / "coco_val2017" / "000000000139.jpg").read_bytes() == b"\xff\xd8\xff jpeg"
    assert not list(tmp_path.glob(".coco_val2017.partial-*"))

    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("val2017/../../escaped.jpg", b"x")
    with pytest.raises(FetchError, match="unexpected or unsafe members"):
        extract_coco_zip(evil, tmp_path / "other")
    assert not (tmp_path / "other").exists() and not (tmp_path.parent / "escaped.jpg").exists()
