"""The one safe-open rule and the one escape, and the hostile HF cache blobs they answer under --deep."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from checks.tiny_models import snapshot_dir
from preflight_core.findings import shown
from preflight_core.hashing import sha256_file
from preflight_core.safe_io import NotARegularFile, open_regular
from tests.test_hostile_trees import run_bounded

SIGLIP_B = "google/siglip2-base-patch16-224"
HOSTILE_TEXT = "Forbidden \x1b]0;owned\x07\x1b[2J\x1b[31mFAKE: all good, READY\x9b\x00"


def test_printable_leaves_no_control_character():
    text = shown(HOSTILE_TEXT)
    assert text.isprintable() and "\x1b" not in text and "\\x1b]0;owned\\x07" in text
    assert shown(os.fsdecode(b"caf\xe9\n.jpg")) == "caf\\xe9\\n.jpg"
    assert shown("plain text") == "plain text"


def make_fifo(p: Path) -> None:
    os.mkfifo(p)


def make_zero_device(p: Path) -> None:
    os.mknod(p, 0o644 | stat.S_IFCHR, os.makedev(1, 5))  # what /dev/zero is: endless zeros


SPECIALS = [make_fifo]
if os.geteuid() == 0:
    SPECIALS.append(make_zero_device)


@pytest.mark.parametrize("make", SPECIALS)
def test_open_regular_refuses_special_files_at_once(tmp_path, make):
    path = tmp_path / "blob"
    make(path)
    with pytest.raises(NotARegularFile) as e:
        sha256_file(path)
    assert str(path) in str(e.value) and "not a regular file" in str(e.value)
    with open_regular(Path(__file__)) as f:
        assert f.name == __file__ and f.read(3)


@pytest.mark.torch
@pytest.mark.parametrize("make", SPECIALS)
def test_deep_run_with_a_special_file_as_weights_blob_is_broken_in_seconds(pytester, world, make):
    """Issue 17.1: a FIFO (or `mknod c 1 5`) as the weights blob: --deep answered never; now a broken row."""
    blob = (snapshot_dir(world / "hf" / "hub", SIGLIP_B) / "model.safetensors").resolve()
    blob.unlink()
    make(blob)
    run, seconds = run_bounded(pytester, "-m", "siglip2", "--deep", "--device=cpu", world=world)
    out = run.result.stdout.str()
    assert run.status("siglip2_base") == "broken", out
    row = next(a for a in run.report["assets"] if a["name"] == "siglip2_base")
    text = " ".join(row["problems"])
    assert blob.name in text and "not a regular file" in text, text
    assert "Traceback" not in out and "bug in preflight" not in out, out
    assert seconds < 60
