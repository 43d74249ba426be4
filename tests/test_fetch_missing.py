"""`pytest --fetch-missing` end to end: a tiny world emptied of its assets, refilled from fake servers.

The metadata comes from the fake static server (PREFLIGHT_MIRROR), the models from the fake Hub
(HF_ENDPOINT), COCO from the fake Kaggle API, and ImageNet val from a tar in <data root>/downloads.
The real clients do the work; the servers' request logs prove that each artifact is fetched once.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from checks import models
from checks.tiny import build_tiny_world, tiny_image, tiny_labels
from preflight_core.registry import IMAGENET_META_FILES
from tests.checkrun import clean_environment, run_checks
from tests.conftest import KAGGLE_USER as USER
from tests.fakes.hub_server import FakeHub
from tests.fakes.imagenet_tar import write_val_tar
from tests.fakes.kaggle_server import FakeKaggle

pytestmark = pytest.mark.torch  # tiny models are written and loaded with torch


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
    write_val_tar(world.data_root / "downloads" / "ILSVRC2012_img_val.tar", tiny_labels(), body=tiny_image)
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
    assert fetched["imagenet_val"]["ok"] and fetched["imagenet_meta"]["ok"]
    assert fetched["imagenet_val"]["message"].startswith("reorganized 12 images from ILSVRC2012_img_val.tar")
    assert fetched["imagenet_meta"]["message"].startswith("fetched")
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
    assert "--fetch-missing tried:" in message and "404" in message


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


@pytest.mark.parametrize("fault", ["read-only", "immutable"])
def test_an_empty_folder_that_cannot_be_removed_becomes_the_row_not_a_crash(pytester, emptied_world, monkeypatch,
                                                                             fault):
    coco = Path(emptied_world) / "data" / "raw" / "coco_val2017"
    coco.mkdir()  # empty: the fetch removes it to put its link there, and that fails
    if fault == "read-only":  # a read-only mount: the OS call fails with EROFS (root bypasses chmod)
        rmdir = os.rmdir

        def read_only_rmdir(path, *args, **kw):
            if Path(path) == coco:
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
            return rmdir(path, *args, **kw)

        monkeypatch.setattr(os, "rmdir", read_only_rmdir)
        words, fix = "the data root is read-only", "choose a writable --data-root"
    else:  # an immutable data root: a real obstacle that root cannot bypass either
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(coco.parent)],
                                                            capture_output=True).returncode:
            pytest.skip("chattr +i is not supported here")
        words, fix = "permission denied", "lsattr -d"
    try:
        run = run_checks(pytester, "--fetch-missing", "-m", "coco", world=emptied_world)
    finally:
        if fault == "immutable":
            subprocess.run(["chattr", "-i", str(coco.parent)], check=True)
    assert run.ret != pytest.ExitCode.INTERNAL_ERROR and run.report["assets"], run.result.stdout.str()
    row = next(a for a in run.report["assets"] if a["name"] == "coco_val2017")
    assert row["status"] in ("missing", "optional-absent") and not row["fetched"]["ok"], row
    message = run.message("test_coco_val2017.py::test_present")
    assert "--fetch-missing tried:" in message and words in message and str(coco) in message, message
    assert fix in row["fix"], row
    assert coco.is_dir()  # left as it was


def test_ctrl_c_during_fetch_missing_ends_with_one_line(pytester, emptied_world, monkeypatch):
    import fetchers.imagenet_tar as reorganizer
    from tests.fakes.imagenet_tar import ctrl_c_at_write

    write = reorganizer._write_file
    monkeypatch.setattr(reorganizer, "_write_file", ctrl_c_at_write(write))
    run = run_checks(pytester, "--fetch-missing", "-m", "imagenet", world=emptied_world)
    assert run.ret == pytest.ExitCode.INTERRUPTED
    text = run.result.stdout.str() + run.result.stderr.str()
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    partial = Path(emptied_world) / "data" / "raw" / ".imagenet_val.partial"
    lines = [line for line in text.splitlines() if "interrupted while fetching" in line]
    assert len(lines) == 1, text
    assert f"left {partial} (" in lines[0] and "rerun the same command to resume" in lines[0]
    assert len([p for p in partial.rglob("*") if p.is_file()]) == 4

    monkeypatch.setattr(reorganizer, "_write_file", write)
    again = run_checks(pytester, "--fetch-missing", "-m", "imagenet", world=emptied_world)
    assert again.ret == 0, again.result.stdout.str()
    assert not partial.exists()


def test_outcomes_are_records_and_the_log_says_each_failure_once(emptied_world, http_mirror, capsys):
    from checks.tiny import load_tiny_world
    from fetchers.plan import FetchOutcome, fetch_missing
    from preflight_core.registry import ASSETS

    http_mirror.files.clear()  # every metadata URL answers 404
    world = load_tiny_world(Path(emptied_world))
    outcomes = fetch_missing(world, [ASSETS["imagenet_meta"], ASSETS["clip_b32"]], settings={})
    meta = outcomes["imagenet_meta"]
    assert isinstance(meta, FetchOutcome) and not meta.ok and not meta.changed
    assert "could not download imagenet_class_index.json" in meta.message and "Fix:" not in meta.message
    assert meta.fix and "Fix:" not in meta.fix.text
    assert outcomes["clip_b32"].ok and outcomes["clip_b32"].changed
    out = capsys.readouterr().out
    assert "could not download" not in out  # the log names the failure; the row holds it, once
    assert "preflight: imagenet_meta: fetch failed (its row in the readiness table says why" in out
    lines = [line for line in out.splitlines() if line.startswith("preflight:")]
    assert not [line for line in lines if re.search(r"\d (kB|KB|MB|GB)\b", line)], lines  # IEC units only
    assert "preflight: fetching clip_b32 (CLIP ViT-B/32 (open_clip, openai), 577.1 MiB)" in out


@pytest.mark.parametrize(("fault", "words", "fix"), [
    (OSError(errno.EROFS, "Read-only file system", "/data/raw/imagenet_meta"),
     "the data root is read-only: /data/raw/imagenet_meta", "choose a writable --data-root=PATH"),
    (PermissionError(errno.EACCES, "Permission denied", "/data/raw"), "permission denied: /data/raw",
     "make it writable"),
    (OSError(errno.ENOSPC, "No space left on device", "/data/raw/x.part"), "no space left", "df -h"),
])
def test_file_system_faults_are_explained_by_their_cause(fault, words, fix):
    from fetchers.errors import explain

    message, how = explain(fault, Path("/data/raw"))
    assert words in message and fix in how.text and "Errno" not in message + how.text


def test_a_file_in_the_way_is_named_with_the_way_out(tmp_path):
    from fetchers.errors import explain

    (tmp_path / "raw").write_text("a file")
    try:
        (tmp_path / "raw" / "imagenet_meta").mkdir(parents=True)
    except OSError as e:
        message, fix = explain(e, tmp_path / "raw")
    assert message.startswith(f"{tmp_path / 'raw'} is a file where a folder must be")
    assert f"mv {tmp_path / 'raw'} {tmp_path / 'raw'}.old" in fix.text


def test_fetch_missing_repairs_a_corrupt_cached_file(pytester, tmp_path, monkeypatch, hub: FakeHub):
    """The HF cache is a cache: an edited config.json blob is fetched again, and the row turns ready."""
    clean_environment(monkeypatch)
    world = build_tiny_world(tmp_path / "world")
    repo = next(world.hf_cache.glob("models--timm--vit_base_patch32_clip_224.openai"))
    snapshot = next((repo / "snapshots").iterdir())
    repo_id = "timm/vit_base_patch32_clip_224.openai"
    hub.add_repo(repo_id, {p.name: p.read_bytes() for p in snapshot.iterdir()}, sha=snapshot.name)
    weights = snapshot / "open_clip_model.safetensors"
    blob = weights.resolve()
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes: only the hash (--deep) can tell
    blob.write_bytes(bytes(data))
    before = run_checks(pytester, "-m", "clip and not gpu", "--deep", world=tmp_path / "world")
    assert before.status("clip_b32") == "broken"
    row = next(a for a in before.report["assets"] if a["name"] == "clip_b32")
    assert row["fix_commands"] and row["fix_commands"][0].startswith("rm -- ")
    subprocess.run(row["fix_commands"][0], shell=True, check=True)  # the rm; the fetch follows here:
    models.clear_loaded()  # a new session in the same process: forget the model loaded from the corrupt blob
    after = run_checks(pytester, "-m", "clip and not gpu", "--deep", "--fetch-missing", world=tmp_path / "world")
    assert after.status("clip_b32") == "ready", after.result.stdout.str()
    assert len(hub.downloads(repo_id, "open_clip_model.safetensors")) == 1
