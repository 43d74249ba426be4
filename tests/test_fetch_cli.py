"""python -m fetchers and scripts/download_data.py: the setup guide's command lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from core.registry import IMAGENET_META_FILES
from fetchers.__main__ import main
from tests.checkrun import PROJECT


def serve_reference_meta(http_mirror, reference_imagenet: Path) -> None:
    names = {"imagenet_simple_labels.json": "imagenet-simple-labels.json"}
    for remote in IMAGENET_META_FILES.values():
        source = reference_imagenet / names.get(remote.filename, remote.filename)
        http_mirror.serve_url(remote.urls[0], source.read_bytes())


def test_imagenet_map_fetches_pinned_files_and_derives_wnid_to_label(http_mirror, reference_imagenet, tmp_path,
                                                                      capsys):
    serve_reference_meta(http_mirror, reference_imagenet)
    assert main(["--imagenet-map", "--data-root", str(tmp_path / "raw")]) == 0
    meta = tmp_path / "raw" / "imagenet_meta"
    for name in ("imagenet_class_index.json", "ILSVRC2012_val_synsets.txt"):
        assert (meta / name).read_bytes() == (reference_imagenet / name).read_bytes()
    wnid_to_label = json.loads((meta / "wnid_to_label.json").read_text())
    assert len(wnid_to_label) == 1000 and wnid_to_label["n01440764"] == "tench"
    assert "imagenet_meta: fetched" in capsys.readouterr().out

    http_mirror.reset()
    assert main(["--imagenet-map", "--data-root", str(tmp_path / "raw")]) == 0  # a rerun downloads nothing
    assert http_mirror.requests(method="GET") == []


def test_official_coco_refuses_an_existing_folder_before_downloading(http_mirror, tmp_path, capsys):
    existing = tmp_path / "raw" / "coco_val2017"
    existing.mkdir(parents=True)
    (existing / "mine.jpg").write_bytes(b"user data")
    assert main(["--coco", "--coco-source", "official", "--data-root", str(tmp_path / "raw")]) == 1
    assert "already exists" in capsys.readouterr().err
    assert http_mirror.requests() == []  # not one byte of the 815 MB zip
    assert (existing / "mine.jpg").read_bytes() == b"user data"


def test_nothing_selected_is_a_usage_error(capsys):
    assert main([]) == 2
    assert "nothing selected" in capsys.readouterr().err


def test_setup_guide_script_takes_the_same_flags():
    out = subprocess.run([sys.executable, "scripts/download_data.py", "--help"], cwd=PROJECT,
                         capture_output=True, text=True)
    assert out.returncode == 0
    for flag in ("--reorganize-imagenet", "--siglip2", "--clip", "--imagenet-map", "--coco", "--all"):
        assert flag in out.stdout
