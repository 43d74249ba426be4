"""python -m fetchers and scripts/download_data.py: the setup guide's command lines."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from fetchers.__main__ import main
from preflight_core.registry import IMAGENET_META_FILES
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


def run_printed(command: str, **kw) -> subprocess.CompletedProcess:
    """Run a fix exactly as printed (a shell line), with this interpreter as `python`, from the project root."""
    command = re.sub(r"(^|&& )python ", lambda m: f"{m.group(1)}{shlex.quote(sys.executable)} ", command)
    return subprocess.run(command, shell=True, cwd=PROJECT, capture_output=True, text=True, **kw)


def test_a_data_root_that_is_a_file_gets_a_message_and_a_fix_not_an_errno(http_mirror, reference_imagenet,
                                                                           tmp_path, capsys):
    serve_reference_meta(http_mirror, reference_imagenet)
    root = tmp_path / "raw"
    root.write_text("not a folder")
    assert main(["--imagenet-map", "--data-root", str(root)]) == 1
    err = capsys.readouterr().err
    assert "Errno" not in err and "Traceback" not in err
    assert "where a folder must be" in err and str(root) in err.split("fix:")[0]
    assert re.search(r"imagenet_meta: fix: .*--data-root", err)
    assert root.read_text() == "not a folder"  # left as it was


def test_a_wnid_to_label_that_is_not_json_is_named_with_a_fix_that_works(http_mirror, reference_imagenet,
                                                                         tmp_path, capsys):
    serve_reference_meta(http_mirror, reference_imagenet)
    meta = tmp_path / "raw" / "imagenet_meta"
    meta.mkdir(parents=True)
    (meta / "wnid_to_label.json").write_text("tench, goldfish, ...\n")  # e.g. an old hand-made file
    assert main(["--imagenet-map", "--data-root", str(tmp_path / "raw")]) == 1
    err = capsys.readouterr().err
    assert f"{meta / 'wnid_to_label.json'} exists but cannot be read as JSON" in err and "left as it is" in err
    assert (meta / "wnid_to_label.json").read_text() == "tench, goldfish, ...\n"
    fix = re.search(r"imagenet_meta: fix: (.*)", err).group(1)
    assert fix.startswith(f"mv {meta / 'wnid_to_label.json'} {meta / 'wnid_to_label.json'}.old && ")
    done = run_printed(fix)
    assert done.returncode == 0, done.stderr
    assert json.loads((meta / "wnid_to_label.json").read_text())["n01440764"] == "tench"
    assert (meta / "wnid_to_label.json.old").read_text() == "tench, goldfish, ...\n"  # kept, moved aside


def test_one_failure_is_printed_once_with_its_fix_and_sizes_in_iec_units(http_mirror, tmp_path, capsys):
    assert main(["--imagenet-map", "--data-root", str(tmp_path / "raw")]) == 1  # the mirror has nothing: 404
    out, err = capsys.readouterr()
    assert err.count("imagenet_meta: FAILED: ") == 1 and err.count("could not download") == 1, err
    assert err.count("imagenet_meta: fix: ") == 1
    assert "imagenet_meta: fetching ImageNet metadata (class index, simple labels, val synsets) (536.7 KiB)" in out
    assert not re.search(r"\d (kB|KB|MB|GB)\b", out)


CTRL_C = """
import sys
sys.path.insert(0, sys.argv[1])
import fetchers.imagenet_tar as t
from tests.fakes.imagenet_tar import ctrl_c_at_write
t._write_file = ctrl_c_at_write(t._write_file)
from fetchers.__main__ import run
sys.exit(run(sys.argv[2:]))
"""


def test_ctrl_c_ends_with_one_line_and_the_rerun_resumes(tmp_path):
    from tests.fakes.imagenet_tar import small_labels, write_val_tar

    labels = small_labels(n_classes=4, per_class=3)
    root = tmp_path / "raw"
    (root / "imagenet_meta").mkdir(parents=True)
    (root / "imagenet_meta" / "ILSVRC2012_val_synsets.txt").write_text("\n".join(labels) + "\n")
    tar = write_val_tar(tmp_path / "ILSVRC2012_img_val.tar", labels)
    argv = ["--reorganize-imagenet", str(tar), "--data-root", str(root)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-c", CTRL_C, str(PROJECT), *argv], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 130, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    partial = root / ".imagenet_val.partial"
    assert lines[0].startswith(f"interrupted while fetching imagenet_val: left {partial} (")
    assert "rerun the same command to resume" in lines[0] and f"rm -rf {partial}" in lines[0]
    assert len([p for p in partial.rglob("*") if p.is_file()]) == 4 and not (root / "imagenet_val").exists()

    again = subprocess.run([sys.executable, "-m", "fetchers", *argv], cwd=PROJECT, capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0, again.stderr
    assert "reorganized 12 images" in again.stdout and not partial.exists()
    assert len(list((root / "imagenet_val").rglob("*.JPEG"))) == 12
