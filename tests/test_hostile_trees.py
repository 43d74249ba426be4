"""Hostile but plausible trees: none hangs or crashes the checks; each fails the right row, naming the file.

Every run is bounded by an alarm: a check that blocks (say, on a FIFO) fails its test instead of
hanging the self-tests. ``HOSTILE`` is shared with bench/bench_data_checks.py, which times each case.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from checks.tiny import TINY_CLASSES, build_tiny_world, jpeg_bytes
from tests.checkrun import CheckRun, clean_environment, run_checks
from tests.test_data_checks import coco, image, meta, val

WNIDS = sorted(w for w, _, _ in TINY_CLASSES)
RUN_LIMIT_S = 60  # a run of the tiny world takes about a second; a hang is a failure, not a wait


def replace(path: Path, plant: Callable[[Path], None]) -> None:
    path.unlink()
    plant(path)


# --------------------------------------------------------------------------- the trees


def fifo_image(world):
    replace(image(world, 3), os.mkfifo)


def socket_image(world):
    path = image(world, 3)
    path.unlink()
    here = os.getcwd()
    os.chdir(path.parent)  # a unix socket path is limited to ~108 bytes: bind relative to its folder
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(path.name)
    finally:
        os.chdir(here)


def device_image(world):
    """A symlink to /dev/zero: endless zeros to anything that reads it to the end."""
    replace(image(world, 3), lambda p: p.symlink_to("/dev/zero"))


def self_linked_image(world):
    replace(image(world, 3), lambda p: p.symlink_to(p.name))  # ELOOP


def dangling_image(world):
    replace(image(world, 3), lambda p: p.symlink_to("moved_away.JPEG"))


def huge_image(world):
    """A real JPEG's first bytes, then 2 GiB of zeros (sparse) and an end marker: it looks like a JPEG."""
    path = image(world, 3)
    head = path.read_bytes()[:1024]
    with open(path, "r+b") as f:
        f.truncate(0)
        f.write(head)
        f.seek(2 * 2**30 - 2)
        f.write(b"\xff\xd9")


def folder_links_up(world):
    (val(world) / WNIDS[0] / "up").symlink_to("..", target_is_directory=True)


def folder_links_to_itself(world):
    (val(world) / WNIDS[0] / "again").symlink_to(".", target_is_directory=True)


def folder_linked_twice(world):
    (val(world) / WNIDS[0] / "also").symlink_to(val(world) / WNIDS[1], target_is_directory=True)


def dangling_class_folder(world):
    folder = val(world) / WNIDS[3]
    for p in folder.iterdir():
        p.unlink()
    folder.rmdir()
    folder.symlink_to("/nonexistent/imagenet_val/" + WNIDS[3], target_is_directory=True)


def newline_in_name(world):
    (val(world) / WNIDS[0] / "photo\nof a cat.jpg").write_bytes(jpeg_bytes(99))


def undecodable_name(world):
    (val(world) / WNIDS[0] / os.fsdecode(b"caf\xe9.JPEG")).write_bytes(jpeg_bytes(98))


def nested_class_index(world):
    """25 million opening brackets: json.loads raises RecursionError."""
    (meta(world) / "imagenet_class_index.json").write_bytes(b"[" * 25_000_000)


def fifo_meta_file(world):
    replace(meta(world) / "wnid_to_label.json", os.mkfifo)


def self_linked_meta_file(world):
    replace(meta(world) / "wnid_to_label.json", lambda p: p.symlink_to(p.name))


def deep_value_in_class_index(world):
    """Parses (300 levels), but a message that reprs the value must not recurse or run on."""
    path = meta(world) / "imagenet_class_index.json"
    path.write_text(path.read_text().replace('["n01440764", "tench"]', "[" * 300 + "]" * 300, 1))


def coco_fifo(world):
    replace(sorted(coco(world).iterdir())[0], os.mkfifo)


def coco_folder_loop(world):
    (coco(world) / "up").symlink_to("..", target_is_directory=True)


IV, IM, CO = "test_imagenet_val.py::", "test_imagenet_meta.py::", "test_coco_val2017.py::"
DECODE = "test_images_decode[shard1of1]"

# (plant, the checks that must fail, (check, phrase it must say), the row that must be broken)
HOSTILE = [
    (fifo_image, {IV + "test_files_are_readable", IV + DECODE},
     (IV + "test_files_are_readable", "ILSVRC2012_val_00000003.JPEG (a FIFO (named pipe), not a regular file)"),
     "imagenet_val"),
    (socket_image, {IV + "test_files_are_readable", IV + DECODE},
     (IV + "test_files_are_readable", "ILSVRC2012_val_00000003.JPEG (a socket, not a regular file)"), "imagenet_val"),
    (device_image, {IV + "test_files_are_readable", IV + DECODE},
     (IV + "test_files_are_readable", "ILSVRC2012_val_00000003.JPEG (a character device, not a regular file)"),
     "imagenet_val"),
    (self_linked_image, {IV + "test_files_are_readable", IV + DECODE},
     (IV + "test_files_are_readable", "ILSVRC2012_val_00000003.JPEG (a symlink loop"), "imagenet_val"),
    (dangling_image, {IV + "test_files_are_readable", IV + DECODE},
     (IV + "test_files_are_readable", "ILSVRC2012_val_00000003.JPEG (a dangling symlink to moved_away.JPEG"),
     "imagenet_val"),
    (huge_image, {IV + "test_files_are_plausibly_sized", IV + DECODE},
     (IV + "test_files_are_plausibly_sized", "ILSVRC2012_val_00000003.JPEG (2.0 GiB)"), "imagenet_val"),
    (folder_links_up, {IV + "test_tree_can_be_walked"},
     (IV + "test_tree_can_be_walked", f"{WNIDS[0]}/up (a folder loop: it is the root again"), "imagenet_val"),
    (folder_links_to_itself, {IV + "test_tree_can_be_walked"},
     (IV + "test_tree_can_be_walked", f"{WNIDS[0]}/again (a folder loop: it is {WNIDS[0]} again"), "imagenet_val"),
    (folder_linked_twice, {IV + "test_tree_can_be_walked"},
     (IV + "test_tree_can_be_walked", f"{WNIDS[0]}/also (the same folder as {WNIDS[1]}"), "imagenet_val"),
    (dangling_class_folder, {IV + "test_files_are_readable", IV + "test_class_folder_count",
                             IV + "test_class_folders_match_class_index", IV + "test_total_images",
                             IV + "test_each_id_exactly_once"},
     (IV + "test_files_are_readable", f"{WNIDS[3]} (a dangling symlink to /nonexistent/"), "imagenet_val"),
    (newline_in_name, {IV + "test_file_names_follow_scheme"},
     (IV + "test_file_names_follow_scheme", f"{WNIDS[0]}/photo\\nof a cat.jpg"), "imagenet_val"),
    (undecodable_name, {IV + "test_file_names_follow_scheme"},
     (IV + "test_file_names_follow_scheme", f"{WNIDS[0]}/caf\\xe9.JPEG"), "imagenet_val"),
    (nested_class_index, {IM + "test_files_exist_and_parse", IM + "test_files_match_pinned_versions"},
     (IM + "test_files_exist_and_parse", "imagenet_class_index.json (does not parse: nested too deeply)"),
     "imagenet_meta"),
    (fifo_meta_file, {IM + "test_files_exist_and_parse"},
     (IM + "test_files_exist_and_parse", "wnid_to_label.json (a FIFO (named pipe), not a regular file)"),
     "imagenet_meta"),
    (self_linked_meta_file, {IM + "test_files_exist_and_parse"},
     (IM + "test_files_exist_and_parse", "wnid_to_label.json (a symlink loop"), "imagenet_meta"),
    (deep_value_in_class_index, {IM + "test_class_index_shape", IM + "test_files_match_pinned_versions"},
     (IM + "test_class_index_shape", "0: [[[[...]]]]"), "imagenet_meta"),
    (coco_fifo, {CO + "test_files_are_readable", CO + DECODE},
     (CO + "test_files_are_readable", "000000000139.jpg (a FIFO (named pipe), not a regular file)"), "coco_val2017"),
    (coco_folder_loop, {CO + "test_tree_can_be_walked"},
     # coco_val2017 is a symlink to …/coco2017/val2017, so up/ is coco2017/ and up/val2017 the loop
     (CO + "test_tree_can_be_walked", "up/val2017 (a folder loop: it is the root again"), "coco_val2017"),
]


class Hung(Exception):
    pass


@contextlib.contextmanager
def deadline(seconds: int) -> Iterator[dict]:
    """Raise ``Hung`` in whatever blocks (a syscall on a FIFO included) once ``seconds`` pass.

    Then again every second: the run under test catches the first as a failing check and may block
    in the next one.
    """
    state = {"fired": False}

    def alarm(signum, frame):
        state["fired"] = True
        raise Hung(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)
    try:
        yield state
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_bounded(pytester, *args: str, world: Path) -> tuple[CheckRun, float]:
    start = time.perf_counter()
    with deadline(RUN_LIMIT_S) as state:
        run = run_checks(pytester, *args, world=world)
    assert not state["fired"], f"the checks hung (stopped after {RUN_LIMIT_S} s):\n{run.result.stdout.str()}"
    return run, time.perf_counter() - start


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    clean_environment(monkeypatch)
    build_tiny_world(tmp_path / "world", models=False)
    return tmp_path / "world"


@pytest.mark.parametrize(("plant", "failing", "says", "row"), HOSTILE, ids=[h[0].__name__ for h in HOSTILE])
def test_hostile_tree_fails_its_row_in_seconds(pytester, world, plant, failing, says, row):
    plant(world)
    run, _ = run_bounded(pytester, "-m", "imagenet or coco", "--deep", world=world)
    out = run.result.stdout.str()
    assert run.failed() == failing, out
    check, phrase = says
    assert phrase in run.message(check), run.message(check)
    assert run.status(row) == "broken", out
    assert run.ret == 1 and run.report["ok"] is False
    assert "object at 0x" not in out and "INTERNALERROR" not in out and "Traceback" not in out, out
    others = {"imagenet_val", "imagenet_meta", "coco_val2017"} - {row}
    if plant not in (dangling_class_folder,):  # cross-checks that need the broken row say not-checked
        assert all(run.status(o) in ("ready", "not-checked") for o in others), run.statuses()


def test_a_fifo_is_never_opened_by_the_quick_checks(pytester, world):
    """Without --deep too: the FIFO has no writer, so opening it for reading would block forever."""
    fifo_image(world)
    run, _ = run_bounded(pytester, "-m", "imagenet", world=world)
    assert run.failed() == {IV + "test_files_are_readable"}, run.result.stdout.str()
    assert run.status("imagenet_val") == "broken"


def test_unprintable_names_are_shown_escaped_in_the_report(pytester, world):
    newline_in_name(world)
    undecodable_name(world)
    run, _ = run_bounded(pytester, "-m", "imagenet", world=world)
    row = next(a for a in run.report["assets"] if a["name"] == "imagenet_val")
    text = "\n".join(row["problems"])
    assert "photo\\nof a cat.jpg" in text and "caf\\xe9.JPEG" in text, text
    assert "\udce9" not in text and "photo\nof" not in text


def test_hostile_entries_do_not_hide_the_rest_of_the_tree(pytester, world):
    """A loop and a FIFO in one class folder: the other faults of the tree are still reported."""
    folder_links_up(world)
    fifo_image(world)
    (image(world, 5)).write_bytes(b"GIF89a" + b"\0" * 64)
    run, _ = run_bounded(pytester, "-m", "imagenet", world=world)
    assert run.failed() == {IV + "test_tree_can_be_walked", IV + "test_files_are_readable",
                            IV + "test_files_are_jpeg"}, run.result.stdout.str()
