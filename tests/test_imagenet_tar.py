"""fetchers.imagenet_tar on synthetic tars: flat and face-blurred, shuffled, unsafe, incomplete, interrupted."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest

from fetchers.download import NotEnoughSpace
from fetchers.imagenet_tar import (
    ExistingTreeDiffers,
    ReorganizeError,
    ReorganizeResult,
    UnsafeMember,
    reorganize_imagenet_tar,
)
from preflight_core.findings import human_bytes
from tests.fakes.imagenet_tar import member_name, small_labels, tiny_jpeg, write_val_tar

REPO = Path(__file__).resolve().parents[1]
LABELS = small_labels(n_classes=4, per_class=3)  # 12 images
QUIET = dict(progress=None)


class Interrupt(Exception):
    pass


@pytest.fixture
def synsets(tmp_path: Path) -> Path:
    path = tmp_path / "ILSVRC2012_val_synsets.txt"
    path.write_text("\n".join(LABELS) + "\n")
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "data_root"


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def fingerprint(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def expected_tree(ids=None, variant="official") -> dict[str, bytes]:
    ids = range(1, len(LABELS) + 1) if ids is None else ids
    return {f"{LABELS[i - 1]}/{member_name(i, '', variant).rsplit('/', 1)[-1]}": tiny_jpeg() for i in ids}


def member(name: str, content: bytes | None = b"x", type_: bytes = tarfile.REGTYPE, linkname: str = ""):
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname = type_, linkname
    ti.size = len(content) if content is not None and type_ == tarfile.REGTYPE else 0
    return ti, content if type_ == tarfile.REGTYPE else None


# --- the two releases ------------------------------------------------------------------------
def test_flat_tar_in_shuffled_order_is_labelled_by_file_name(tmp_path, root, synsets) -> None:
    tar = write_val_tar(tmp_path / "ILSVRC2012_img_val.tar", LABELS, seed=3)
    with tarfile.open(tar) as tf:
        order = [m.name for m in tf.getmembers()]
    assert order != sorted(order)  # the member order really is shuffled
    result = reorganize_imagenet_tar(tar, root, synsets, **QUIET)
    assert tree(root / "imagenet_val") == expected_tree()
    assert result == ReorganizeResult(root / "imagenet_val", "official", 12, 4, 12, (), result.seconds, False)
    assert not (root / ".imagenet_val.partial").exists()
    assert json.loads((root / ".imagenet_val.json").read_text())["state"] == "complete"


def test_face_blurred_tar_gz_keeps_jpg_names_and_allows_three_missing(tmp_path, root, synsets) -> None:
    ids = [i for i in range(1, 13) if i not in (2, 7, 11)]
    tar = write_val_tar(tmp_path / "val_blurred.tar.gz", LABELS, variant="face-blurred", ids=ids, compression="gz")
    result = reorganize_imagenet_tar(tar, root, synsets, **QUIET)
    assert tree(root / "imagenet_val") == expected_tree(ids, "face-blurred")
    assert (result.variant, result.n_images, result.missing_ids) == ("face-blurred", 9, (2, 7, 11))


def test_face_blurred_tar_missing_more_than_three_is_refused(tmp_path, root, synsets) -> None:
    tar = write_val_tar(tmp_path / "val_blurred.tar", LABELS, variant="face-blurred", ids=range(1, 9))
    with pytest.raises(ReorganizeError, match=r"missing images \(at most 3 may be; .*\) — 4 of 12 \(33.33%\) — first: id 9, id 10"):
        reorganize_imagenet_tar(tar, root, synsets, **QUIET)
    assert not (root / "imagenet_val").exists()


def test_face_blurred_image_in_the_wrong_class_folder_is_refused(tmp_path, root, synsets) -> None:
    other = next(w for w in LABELS if w != LABELS[4])
    wrong = member(f"val_blurred/{other}/ILSVRC2012_val_00000005.jpg", tiny_jpeg())
    tar = write_val_tar(tmp_path / "val_blurred.tar", LABELS, variant="face-blurred",
                        ids=[i for i in range(1, 13) if i != 5], extra=[wrong])
    with pytest.raises(ReorganizeError, match="folder their synsets label disagrees with") as err:
        reorganize_imagenet_tar(tar, root, synsets, **QUIET)
    assert f"ILSVRC2012_val_00000005.jpg (label {LABELS[4]})" in str(err.value)


def test_official_tar_missing_an_image_is_refused(tmp_path, root, synsets) -> None:
    tar = write_val_tar(tmp_path / "v.tar", LABELS, ids=[i for i in range(1, 13) if i != 9])
    with pytest.raises(ReorganizeError, match=r"missing images \(at most 0 may be; .*\) — 1 of 12 \(8.33%\) — id 9\b"):
        reorganize_imagenet_tar(tar, root, synsets, **QUIET)
    assert not (root / "imagenet_val").exists()


# --- members that must be refused ------------------------------------------------------------
@pytest.mark.parametrize(
    ("bad", "words"),
    [
        (member("/etc/ILSVRC2012_val_00000001.JPEG"), "unsafe path"),
        (member("../ILSVRC2012_val_00000001.JPEG"), "unsafe path"),
        (member("val_blurred/../../evil.jpg"), "unsafe path"),
        (member("ILSVRC2012_val_00000013.JPEG", type_=tarfile.SYMTYPE, linkname="/etc/passwd"), "is a symlink"),
        (member("ILSVRC2012_val_00000013.JPEG", type_=tarfile.LNKTYPE, linkname="ILSVRC2012_val_00000001.JPEG"),
         "is a hard link"),
        (member("dev", type_=tarfile.CHRTYPE), "is a device, FIFO"),
        (member("fifo", type_=tarfile.FIFOTYPE), "is a device, FIFO"),
    ],
    ids=["absolute", "dotdot", "dotdot-nested", "symlink", "hardlink", "chardev", "fifo"],
)
def test_unsafe_members_are_refused(tmp_path, root, synsets, bad, words) -> None:
    tar = write_val_tar(tmp_path / "v.tar", LABELS, extra=[bad])
    with pytest.raises(UnsafeMember, match=words) as err:
        reorganize_imagenet_tar(tar, root, synsets, **QUIET)
    assert bad[0].name in str(err.value) and str(tar) in str(err.value)
    assert not (root / "imagenet_val").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ILSVRC2012_val_synsets.txt", "data_root", "v.tar"]
    assert not Path("/etc/ILSVRC2012_val_00000001.JPEG").exists()


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ([member("README.txt")], "unknown members — README.txt"),
        ([member("ILSVRC2012_val_00000001.jpeg")], "unknown members"),  # wrong case for the flat release
        ([member("ILSVRC2012_val_1.JPEG")], "unknown members"),
        ([member("ILSVRC2012_val_00000013.JPEG")], "image ids outside 1..12"),
        ([member("ILSVRC2012_val_00000004.JPEG", tiny_jpeg())], "duplicate images — ILSVRC2012_val_00000004.JPEG"),
        ([member("val_blurred/n01440764/ILSVRC2012_val_00000004.jpg")], "flat and face-blurred mixed"),
    ],
    ids=["readme", "lowercase", "short-id", "out-of-range", "duplicate", "mixed"],
)
def test_unexpected_members_are_reported(tmp_path, root, synsets, extra, words) -> None:
    tar = write_val_tar(tmp_path / "v.tar", LABELS, extra=extra)
    with pytest.raises(ReorganizeError, match=words) as err:
        reorganize_imagenet_tar(tar, root, synsets, **QUIET)
    assert str(tar) in str(err.value) and "Fix:" in str(err.value)
    assert not (root / "imagenet_val").exists()


MEMBER = 5632  # bytes per member of a tar with 5,000-byte bodies: a 512-byte header + the body padded to 512


def cut_tar(tmp_path: Path, labels: list[str], cut: int) -> Path:
    full = write_val_tar(tmp_path / "full.tar", labels, body=os.urandom(5000))
    truncated = tmp_path / "cut.tar"
    truncated.write_bytes(full.read_bytes()[:cut])
    return truncated


@pytest.mark.parametrize(("cut", "words"), [
    (6 * MEMBER + 512 + 2000, "truncated or corrupt"),  # inside a member's data
    (6 * MEMBER + 200, r"missing images \(.*\) — 6 of 12 \(50.00%\)"),  # inside a header: looks like the end
])
def test_truncated_tar_is_reported(tmp_path, root, synsets, cut, words) -> None:
    with pytest.raises(ReorganizeError, match=words):
        reorganize_imagenet_tar(cut_tar(tmp_path, LABELS, cut), root, synsets, **QUIET)
    assert not (root / "imagenet_val").exists()


def test_the_count_of_missing_images_is_the_count_not_the_examples(tmp_path, root) -> None:
    labels = small_labels(n_classes=10, per_class=10)  # 100 images; the tar is cut after 40 of them
    synsets = tmp_path / "synsets.txt"
    synsets.write_text("\n".join(labels) + "\n")
    with pytest.raises(ReorganizeError) as err:
        reorganize_imagenet_tar(cut_tar(tmp_path, labels, 40 * MEMBER + 200), root, synsets, **QUIET)
    message = str(err.value)
    assert "— 60 of 100 (60.00%) — first: id " in message and "(+55 more)" in message, message


def test_a_refused_tar_names_the_partial_tree_it_kept_and_its_removal_works(tmp_path, root, synsets) -> None:
    with pytest.raises(ReorganizeError) as err:
        reorganize_imagenet_tar(cut_tar(tmp_path, LABELS, 6 * MEMBER + 200), root, synsets, **QUIET)
    partial = root / ".imagenet_val.partial"
    files = [p for p in partial.rglob("*") if p.is_file()]
    size = human_bytes(sum(p.stat().st_size for p in files))
    message = str(err.value)
    assert f"the partial tree {partial} ({len(files)} files, {size}) was kept" in message, message
    assert "a rerun with the same tar resumes it" in message
    command = re.search(r"rm -rf \S+", message).group(0).rstrip(".")
    assert command == f"rm -rf {partial}"
    subprocess.run(shlex.split(command), check=True)  # the printed removal does what it says
    assert not partial.exists()
    assert reorganize_imagenet_tar(write_val_tar(tmp_path / "v.tar", LABELS), root, synsets, **QUIET).n_images == 12


def test_a_refused_tar_without_a_partial_tree_says_nothing_about_one(tmp_path, root, synsets) -> None:
    tar = write_val_tar(tmp_path / "v.tar", LABELS, ids=[], extra=[member("../evil.JPEG")])
    with pytest.raises(UnsafeMember) as err:
        reorganize_imagenet_tar(tar, root, synsets, **QUIET)
    assert "partial tree" not in str(err.value)  # the first member was refused: nothing was written
    assert not any(p.is_file() for p in (root / ".imagenet_val.partial").rglob("*"))


def test_an_unreadable_state_marker_restarts_the_partial_tree(tmp_path, root, synsets) -> None:
    tar = write_val_tar(tmp_path / "v.tar", LABELS)
    with pytest.raises(Interrupt):
        reorganize_imagenet_tar(tar, root, synsets, progress=InterruptingBar(after=5))
    (root / ".imagenet_val.json").write_text("{not json")
    result = reorganize_imagenet_tar(tar, root, synsets, **QUIET)
    assert result.n_written == 12 and tree(root / "imagenet_val") == expected_tree()


def test_not_a_tar_is_reported(tmp_path, root, synsets) -> None:
    bogus = tmp_path / "ILSVRC2012_img_val.tar"
    bogus.write_bytes(b"<!DOCTYPE html><html>login</html>" * 40)
    with pytest.raises(ReorganizeError, match="truncated or corrupt"):
        reorganize_imagenet_tar(bogus, root, synsets, **QUIET)


@pytest.mark.parametrize("content", ["", "n01440764\nnot-a-wnid\n"])
def test_bad_synsets_file_is_reported(tmp_path, root, content) -> None:
    tar = write_val_tar(tmp_path / "v.tar", LABELS)
    bad = tmp_path / "synsets.txt"
    bad.write_text(content)
    with pytest.raises(ReorganizeError, match="is not a val synsets file"):
        reorganize_imagenet_tar(tar, root, bad, **QUIET)


def test_missing_synsets_file_names_the_fix(tmp_path, root) -> None:
    tar = write_val_tar(tmp_path / "v.tar", LABELS)
    with pytest.raises(ReorganizeError, match="--imagenet-map"):
        reorganize_imagenet_tar(tar, root, **QUIET)  # default: data_root/imagenet_meta/ILSVRC2012_val_synsets.txt


# --- never touch the tar or existing data ----------------------------------------------------
def test_tar_is_not_modified(tmp_path, root, synsets) -> None:
    tar = write_val_tar(tmp_path / "v.tar", LABELS)
    before = fingerprint(tar)
    reorganize_imagenet_tar(tar, root, synsets, **QUIET)
    assert fingerprint(tar) == before


@pytest.mark.parametrize("marker", [True, False], ids=["with-marker", "compared-with-the-tar"])
def test_existing_equal_tree_is_left_alone(tmp_path, root, synsets, marker) -> None:
    tar = write_val_tar(tmp_path / "v.tar", LABELS)
    reorganize_imagenet_tar(tar, root, synsets, **QUIET)
    if not marker:
        (root / ".imagenet_val.json").unlink()  # e.g. a tree reorganized by another tool
    mtimes = {p: p.stat().st_mtime_ns for p in (root / "imagenet_val").rglob("*")}
    again = reorganize_imagenet_tar(tar, root, synsets, **QUIET)
    assert again.already_present and again.n_written == 0 and again.n_images == 12 and again.n_classes == 4
    assert {p: p.stat().st_mtime_ns for p in (root / "imagenet_val").rglob("*")} == mtimes


@pytest.mark.parametrize("change", ["extra-file", "missing-file", "other-size", "other-tar"])
def test_existing_different_tree_is_refused_and_untouched(tmp_path, root, synsets, change) -> None:
    tar = write_val_tar(tmp_path / "v.tar", LABELS)
    reorganize_imagenet_tar(tar, root, synsets, **QUIET)
    dest = root / "imagenet_val"
    some = next(dest.rglob("*.JPEG"))
    if change == "extra-file":
        (dest / LABELS[0] / "notes.txt").write_text("mine")
    elif change == "missing-file":
        some.unlink()
    elif change == "other-size":
        some.write_bytes(b"edited by hand")
    else:
        tar = write_val_tar(tmp_path / "blurred.tar", LABELS, variant="face-blurred")
    snapshot = tree(dest)
    with pytest.raises(ExistingTreeDiffers) as err:
        reorganize_imagenet_tar(tar, root, synsets, **QUIET)
    msg = str(err.value)
    assert f"{dest} already exists and differs" in msg and "left untouched" in msg and "mv " in msg
    assert tree(dest) == snapshot


def test_existing_empty_folder_counts_as_absent(tmp_path, root, synsets) -> None:
    (root / "imagenet_val").mkdir(parents=True)
    result = reorganize_imagenet_tar(write_val_tar(tmp_path / "v.tar", LABELS), root, synsets, **QUIET)
    assert not result.already_present and tree(root / "imagenet_val") == expected_tree()


def test_disk_space_is_checked_first(tmp_path, root, synsets) -> None:
    tar = write_val_tar(tmp_path / "v.tar", LABELS)
    with pytest.raises(NotEnoughSpace, match="not enough disk space for the ImageNet val images"):
        reorganize_imagenet_tar(tar, root, synsets, required_bytes=10**18, **QUIET)
    assert not (root / "imagenet_val").exists()
    assert not any((root / ".imagenet_val.partial").rglob("*.JPEG"))


# --- interruptions ---------------------------------------------------------------------------
class InterruptingBar:
    def __init__(self, after: int) -> None:
        self.after, self.done = after, 0

    def __call__(self, desc: str, total: int, unit: str) -> InterruptingBar:
        return self

    def update(self, n: int) -> None:
        self.done += n
        if self.done >= self.after:
            raise Interrupt  # like Ctrl-C in the middle of the tar

    def reset(self, pos: int) -> None:
        pass

    def close(self, message: str) -> None:
        pass


def test_interrupted_run_resumes_on_rerun(tmp_path, root, synsets) -> None:
    tar = write_val_tar(tmp_path / "v.tar", LABELS)
    with pytest.raises(Interrupt):
        reorganize_imagenet_tar(tar, root, synsets, progress=InterruptingBar(after=5))
    assert not (root / "imagenet_val").exists()  # nothing looks complete
    assert len(list((root / ".imagenet_val.partial").rglob("*.JPEG"))) == 5
    assert json.loads((root / ".imagenet_val.json").read_text())["state"] == "partial"
    result = reorganize_imagenet_tar(tar, root, synsets, **QUIET)
    assert result.n_written == 12 - 5 and result.n_images == 12  # resumed, not restarted
    assert tree(root / "imagenet_val") == expected_tree()
    assert not (root / ".imagenet_val.partial").exists()


def test_rerun_with_another_tar_restarts_the_partial_folder(tmp_path, root, synsets) -> None:
    first = write_val_tar(tmp_path / "first.tar", LABELS, body=b"\xff\xd8 other bytes")
    with pytest.raises(Interrupt):
        reorganize_imagenet_tar(first, root, synsets, progress=InterruptingBar(after=6))
    second = write_val_tar(tmp_path / "second.tar", LABELS)
    result = reorganize_imagenet_tar(second, root, synsets, **QUIET)
    assert result.n_written == 12
    assert tree(root / "imagenet_val") == expected_tree()


KILLED = """
import os, signal, sys
sys.path.insert(0, sys.argv[1])
from fetchers.imagenet_tar import reorganize_imagenet_tar
class Bar:
    n = 0
    def update(self, k):
        Bar.n += k
        if Bar.n == 7:
            os.kill(os.getpid(), signal.SIGKILL)
    def reset(self, pos): pass
    def close(self, message): pass
reorganize_imagenet_tar(sys.argv[2], sys.argv[3], sys.argv[4], progress=lambda *a: Bar())
"""


def test_killed_run_then_rerun_completes(tmp_path, root, synsets) -> None:
    tar = write_val_tar(tmp_path / "v.tar", LABELS)
    before = fingerprint(tar)
    proc = subprocess.run([sys.executable, "-c", KILLED, str(REPO), str(tar), str(root), str(synsets)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not (root / "imagenet_val").exists()
    result = reorganize_imagenet_tar(tar, root, synsets, **QUIET)
    assert result.n_written == 5 and tree(root / "imagenet_val") == expected_tree()
    assert fingerprint(tar) == before


def test_concurrent_runs_reorganize_once(tmp_path, root, synsets) -> None:
    tar = write_val_tar(tmp_path / "v.tar", LABELS)
    results: list[ReorganizeResult] = []
    threads = [threading.Thread(target=lambda: results.append(reorganize_imagenet_tar(tar, root, synsets, **QUIET)))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(r.already_present for r in results) == [False, True, True]
    assert tree(root / "imagenet_val") == expected_tree()


def test_without_a_terminal_one_summary_line(tmp_path, root, synsets, capsys) -> None:
    reorganize_imagenet_tar(write_val_tar(tmp_path / "v.tar", LABELS), root, synsets)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("reorganized 12 images of v.tar into 4 class folders")


# --- full scale ------------------------------------------------------------------------------
SPOT_LABELS = {1: "n01751748", 293: "n01440764", 12978: "n02119022", 19877: "n13133613", 50000: "n02437616"}


def test_full_scale_50000_members_with_the_real_synsets(tmp_path, reference_imagenet) -> None:
    synsets = reference_imagenet / "ILSVRC2012_val_synsets.txt"
    labels = synsets.read_text().split()
    tar = write_val_tar(tmp_path / "ILSVRC2012_img_val.tar", labels, seed=2012, body=b"\xff\xd8\xff\xd9")
    result = reorganize_imagenet_tar(tar, tmp_path / "root", synsets, **QUIET)
    assert (result.n_images, result.n_classes, result.missing_ids) == (50_000, 1000, ())
    dest = tmp_path / "root" / "imagenet_val"
    folders = {d.name: os.listdir(d) for d in dest.iterdir()}
    assert len(folders) == 1000 and {len(v) for v in folders.values()} == {50}
    for image_id, wnid in SPOT_LABELS.items():
        assert (dest / wnid / f"ILSVRC2012_val_{image_id:08d}.JPEG").is_file()
    # speed is bench/bench_reorganize.py's business, not a timed assertion here


# --- hostile tars: bounded memory, bounded work, the member named (issue 17.2) ---------------
def cli_reorganize(tar: Path, root: Path, synsets: Path, memory_limit: int | None = None) -> subprocess.CompletedProcess:
    """``python -m fetchers --reorganize-imagenet TAR`` in a fresh process, under an address-space limit."""
    meta = root / "imagenet_meta"
    meta.mkdir(parents=True, exist_ok=True)
    (meta / "ILSVRC2012_val_synsets.txt").write_bytes(synsets.read_bytes())

    def limit() -> None:
        if memory_limit:
            import resource
            resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFLIGHT_")} | {"PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "fetchers", "--reorganize-imagenet", str(tar), f"--data-root={root}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120, preexec_fn=limit)


def sparse_tar_with_a_huge_member(path: Path, name: str, size: int) -> Path:
    """A tar whose member claims ``size`` bytes: a 512-byte header, then a hole (about 300 KB on disk)."""
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode = size, 0o644
    with open(path, "wb") as f:
        f.write(ti.tobuf(tarfile.GNU_FORMAT))
        f.truncate(512 + -(-size // 512) * 512 + 1024)  # zeros: the data, then the end-of-archive blocks
    return path


def test_a_member_larger_than_any_val_image_is_refused_by_name_with_bounded_memory(tmp_path, root, synsets) -> None:
    tar = sparse_tar_with_a_huge_member(tmp_path / "v.tar", "ILSVRC2012_val_00000002.JPEG", 5 * 2**30)
    proc = cli_reorganize(tar, root, synsets, memory_limit=3 * 2**30)
    assert proc.returncode == 1, proc.stderr
    assert "member ILSVRC2012_val_00000002.JPEG claims 5.0 GiB, more than any val image can be" in proc.stderr, \
        proc.stderr
    assert "MemoryError" not in proc.stderr and "Traceback" not in proc.stderr
    assert not list(root.rglob("ILSVRC2012_val_00000002.JPEG"))  # not a byte was written


def test_a_decompression_bomb_is_refused_by_name(tmp_path, root, synsets) -> None:
    zeros = b"\0" * (40 * 2**20)  # two 40 MiB members of zeros: under the per-image bound, 1000× compressible
    tar = write_val_tar(tmp_path / "v.tar.gz", LABELS, ids=[1, 2], body=zeros, seed=None, compression="gz")
    assert tar.stat().st_size < 1 << 20
    proc = cli_reorganize(tar, root, synsets, memory_limit=3 * 2**30)
    assert proc.returncode == 1, proc.stderr
    assert "a decompression bomb" in proc.stderr and "ILSVRC2012_val_00000002.JPEG" in proc.stderr, proc.stderr
    assert "the partial tree" in proc.stderr and ".imagenet_val.partial" in proc.stderr  # member 1 was written
    assert "Traceback" not in proc.stderr


def test_a_flood_of_headers_is_bounded(tmp_path, root, synsets) -> None:
    folder = tarfile.TarInfo("val_blurred")
    folder.type = tarfile.DIRTYPE
    tar = write_val_tar(tmp_path / "v.tar.gz", LABELS, ids=[], compression="gz", extra=[(folder, None)] * 20_000)
    proc = cli_reorganize(tar, root, synsets)
    assert proc.returncode == 1, proc.stderr
    assert "more than 10,016 members (the last read: val_blurred)" in proc.stderr, proc.stderr


def test_a_fifo_given_as_the_tar_is_refused_at_once_by_name(tmp_path, root, synsets) -> None:
    fifo = tmp_path / "ILSVRC2012_img_val.tar"
    os.mkfifo(fifo)  # no writer: opening it for reading the usual way would block forever
    with pytest.raises(ReorganizeError) as err:
        reorganize_imagenet_tar(fifo, root, synsets, **QUIET)
    assert f"{fifo} is a FIFO (named pipe), not a regular file" in str(err.value), str(err.value)
