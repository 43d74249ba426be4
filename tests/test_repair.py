"""A few damaged val images are repaired from the tar the user has (issue 15.5): the checks print
`python -m fetchers --reorganize-imagenet TAR --repair`, which re-extracts exactly those images."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from checks.tiny import build_tiny_world, tiny_image, tiny_labels
from preflight_core.imagenet_files import val_name
from tests.checkrun import PROJECT, clean_environment, run_checks
from tests.test_data_checks import image, val


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tiny world and, in its downloads folder, the tiny val tar its tree was made from."""
    clean_environment(monkeypatch)
    build_tiny_world(tmp_path / "world", models=False)
    downloads = tmp_path / "world" / "data" / "raw" / "downloads"
    downloads.mkdir()
    with tarfile.open(downloads / "ILSVRC2012_img_val.tar", "w") as tf:
        for image_id in range(len(tiny_labels()), 0, -1):
            data = tiny_image(image_id)
            ti = tarfile.TarInfo(val_name(image_id))
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return tmp_path / "world"


def fingerprints(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(folder).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


def test_a_few_damaged_images_are_repaired_by_the_printed_fix(pytester, world):
    truncated, gone = image(world, 3), image(world, 7)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])  # cut short: --deep notices
    gone.unlink()
    before = fingerprints(val(world))
    run = run_checks(pytester, "-m", "imagenet", "--deep", world=world)
    row = next(a for a in run.report["assets"] if a["name"] == "imagenet_val")
    assert row["status"] == "broken", run.result.stdout.str()
    assert "run with --deep" not in json.dumps(row)
    tar = world / "data" / "raw" / "downloads" / "ILSVRC2012_img_val.tar"
    assert row["fix_commands"] == [f"python -m fetchers --reorganize-imagenet {tar} --repair "
                                   f"--data-root={world / 'data' / 'raw'}"], row
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFLIGHT_")} | {"PYTHONPATH": str(PROJECT)}
    for command in row["fix_commands"]:  # pasted into a shell as printed
        done = subprocess.run(command, shell=True, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    assert "re-extracted 2 of" in done.stdout, done.stdout
    after = fingerprints(val(world))
    changed = {k for k in after if after[k] != before.get(k)}
    assert changed == {truncated.relative_to(val(world)).as_posix(), gone.relative_to(val(world)).as_posix()}
    assert truncated.read_bytes() == tiny_image(3) and gone.read_bytes() == tiny_image(7)
    again = run_checks(pytester, "-m", "imagenet", "--deep", world=world)
    assert again.status("imagenet_val") == "ready", again.result.stdout.str()


def test_a_tree_wrong_as_a_whole_keeps_the_whole_tree_fix(pytester, world):
    for image_id in range(1, 12):  # 11 of 12: more than a few (at most 1% or 10)
        image(world, image_id).unlink()
    run = run_checks(pytester, "-m", "imagenet", world=world)
    row = next(a for a in run.report["assets"] if a["name"] == "imagenet_val")
    assert row["status"] == "broken" and "--repair" not in json.dumps(row), row


def test_repair_with_an_intact_tree_touches_nothing(world):
    before = fingerprints(val(world))
    tar = world / "data" / "raw" / "downloads" / "ILSVRC2012_img_val.tar"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFLIGHT_")} | {"PYTHONPATH": str(PROJECT)}
    done = subprocess.run([sys.executable, "-m", "fetchers", "--reorganize-imagenet", str(tar), "--repair",
                           f"--data-root={world / 'data' / 'raw'}"], cwd=PROJECT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "nothing to repair" in done.stdout, done.stderr
    assert fingerprints(val(world)) == before
