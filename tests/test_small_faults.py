"""The small ones of issue 17.9, each through a real entry point: a pytest run on a tiny world or the fetch CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from checks.tiny import build_tiny_world
from tests.checkrun import PROJECT, clean_environment, run_checks
from tests.test_data_checks import image, settle

DATA = "imagenet or coco"


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    clean_environment(monkeypatch)
    build_tiny_world(tmp_path / "world", models=False)
    return tmp_path / "world"


def test_an_image_pil_cannot_identify_is_named_not_shown_as_a_repr(pytester, world):
    image(world, 3).write_bytes(b"\xff\xd8\xff" + b"\x00" * 600)  # a JPEG signature, nothing else
    run = run_checks(pytester, "-m", "imagenet", "--deep", world=world)
    row = next(a for a in run.report["assets"] if a["name"] == "imagenet_val")
    text = " ".join(row["problems"])
    assert "ILSVRC2012_val_00000003.JPEG" in text, text
    assert "<_io." not in text and "BufferedReader" not in text, text


def test_a_verify_cache_file_that_is_a_symlink_is_called_a_symlink(pytester, world):
    settle()  # entries younger than the racy window are not written
    assert run_checks(pytester, "-m", DATA, "--deep", world=world).ret == 0
    files = [p for p in (world / "verified").glob("**/*.json") if p.is_file()]
    assert files
    for p in files:
        p.unlink()
        p.symlink_to(world / "elsewhere.json")
    run = run_checks(pytester, "-m", DATA, "--deep", world=world)
    notes = [n for a in run.report["assets"] for n in a.get("warnings", []) if "verify cache" in n]
    assert notes and all("a symlink, not a cache file (not followed)" in n for n in notes), notes
    assert not any("loop" in n for n in notes)


def test_an_absurd_stall_limit_is_refused_with_a_clear_message(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFLIGHT_")}
    env |= {"PREFLIGHT_STALL_SECONDS": "1e9", "PYTHONPATH": str(PROJECT)}
    proc = subprocess.run([sys.executable, "-m", "fetchers", "--imagenet-map", f"--data-root={tmp_path}"],
                          cwd=PROJECT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "PREFLIGHT_STALL_SECONDS" in proc.stderr and "at most 3600 seconds" in proc.stderr, proc.stderr
