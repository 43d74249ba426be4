"""The data checks on tiny worlds: clean passes; each planted fault fails the check it should."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from checks.tiny import TINY_CLASSES, build_tiny_world, tiny_labels
from preflight_core.imagenet_files import VAL_NAME, val_name
from tests.checkrun import clean_environment, run_checks

DATA = "imagenet or coco"
WNIDS = sorted(w for w, _, _ in TINY_CLASSES)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    clean_environment(monkeypatch)
    monkeypatch.setenv("PREFLIGHT_CACHE_DIR", str(tmp_path / "preflight-cache"))  # not ~/.cache
    build_tiny_world(tmp_path / "world", models=False)
    return tmp_path / "world"


def val(world: Path) -> Path:
    return world / "data" / "raw" / "imagenet_val"


def meta(world: Path) -> Path:
    return world / "data" / "raw" / "imagenet_meta"


def coco(world: Path) -> Path:
    return world / "data" / "raw" / "coco_val2017"


def image(world: Path, image_id: int) -> Path:
    return val(world) / tiny_labels()[image_id - 1] / val_name(image_id)


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def warnings_of(run, asset: str) -> list[str]:
    return next(a["warnings"] for a in run.report["assets"] if a["name"] == asset)


def settle() -> None:
    """Files younger than the verify cache's racy window are verified every time; let the world age past it."""
    from checks import deep

    time.sleep(getattr(deep, "RACY_NS", 0) / 1e9 + 0.1)


def identity(root: Path, path: Path) -> tuple:
    st = path.stat()
    return (path.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def test_clean_tiny_world_passes(pytester, world):
    run = run_checks(pytester, "-m", DATA, "--deep", world=world)
    assert run.ret == 0, run.result.stdout.str()
    assert run.statuses() == {"imagenet_val": "ready", "imagenet_meta": "ready", "coco_val2017": "ready"}
    assert "failed" not in run.outcomes().values()
    assert run.report["ok"] is True


# --------------------------------------------------------------------------- planted faults


def swap_two_images(world):
    a, b = image(world, 1), next(image(world, i) for i in range(2, 13) if tiny_labels()[i - 1] != tiny_labels()[0])
    tmp = a.with_suffix(".tmp")
    a.rename(tmp)
    b.rename(a.parent / b.name)
    tmp.rename(b.parent / a.name)


def move_one_level_down(world):
    inner = val(world) / "val"
    inner.mkdir()
    for wnid in WNIDS:
        (val(world) / wnid).rename(inner / wnid)


def duplicate_image(world):
    src = image(world, 1)
    other = next(w for w in WNIDS if w != src.parent.name)
    shutil.copy(src, val(world) / other / src.name)
    victim = next(p for p in sorted((val(world) / other).glob("*.JPEG")) if p.name != src.name)
    victim.unlink()


def drop_class_folder(world):
    shutil.rmtree(val(world) / WNIDS[-1])


def add_non_wnid_folder(world):
    (val(world) / "misc").mkdir()


def add_stray_image(world):
    shutil.copy(image(world, 1), image(world, 1).parent / "extra_photo.jpg")


def apple_double_image(world):
    """macOS litter named like an image: ImageFolder would try to load it, so it is no harmless file."""
    (image(world, 1).parent / ("._" + image(world, 1).name)).write_bytes(b"\0\5\26\7")


def empty_image(world):
    image(world, 3).write_bytes(b"")


def not_a_jpeg(world):
    image(world, 3).write_bytes(b"GIF89a" + b"\0" * 100)


def truncated_jpeg(world):
    data = image(world, 3).read_bytes()
    image(world, 3).write_bytes(data[: len(data) // 2])


def unsorted_class_index(world):
    def swap(ci):
        ci["0"], ci["1"] = ci["1"], ci["0"]

    edit_json(meta(world) / "imagenet_class_index.json", swap)


def extra_duplicate_label(world):
    edit_json(meta(world) / "imagenet_class_index.json", lambda ci: ci["1"].__setitem__(1, "tench"))


def duplicate_simple_label(world):
    edit_json(meta(world) / "imagenet_simple_labels.json", lambda labels: labels.__setitem__(1, labels[0]))


def wrong_wnid_to_label(world):
    edit_json(meta(world) / "wnid_to_label.json", lambda m: m.__setitem__(WNIDS[0], "carp"))


def unknown_wnid_in_wnid_to_label(world):
    edit_json(meta(world) / "wnid_to_label.json", lambda m: m.__setitem__("n99999999", "mystery"))


def bad_synsets_line(world):
    path = meta(world) / "ILSVRC2012_val_synsets.txt"
    lines = path.read_text().splitlines()
    lines[4] = "tench"
    path.write_text("\n".join(lines) + "\n")


def missing_meta_file(world):
    (meta(world) / "wnid_to_label.json").unlink()


def unparsable_meta_file(world):
    (meta(world) / "wnid_to_label.json").write_text("{not json")


def coco_file_missing(world):
    sorted(coco(world).iterdir())[0].unlink()


def coco_stray_file(world):
    (coco(world) / "notes.txt").write_text("hello")


def coco_empty_file(world):
    sorted(coco(world).iterdir())[0].write_bytes(b"")


def coco_dangling_symlink(world):
    shutil.rmtree(coco(world).resolve())


IV, IM, CO = "test_imagenet_val.py::", "test_imagenet_meta.py::", "test_coco_val2017.py::"
PINS = IM + "test_files_match_pinned_versions"
DECODE = "test_images_decode[shard1of1]"  # one shard without -n

FAULTS = [
    # (fault, tests that must fail, a phrase the first of them must say)
    (swap_two_images, {IV + "test_images_in_their_labelled_folder"}, "images in the wrong class folder"),
    (move_one_level_down, {IV + "test_not_one_level_too_deep", IV + "test_class_folder_count",
                           IV + "test_class_folders_are_wnids", IV + "test_class_folders_match_class_index",
                           IV + "test_images_per_class", IV + "test_total_images", IV + "test_each_id_exactly_once",
                           IV + "test_file_names_follow_scheme"}, "one level too deep"),
    (duplicate_image, {IV + "test_each_id_exactly_once", IV + "test_images_in_their_labelled_folder"},
     "present more than once"),
    (drop_class_folder, {IV + "test_class_folder_count", IV + "test_class_folders_match_class_index",
                         IV + "test_total_images", IV + "test_each_id_exactly_once"}, "3 class folders, expected 4"),
    (add_non_wnid_folder, {IV + "test_class_folders_are_wnids", IV + "test_class_folder_count",
                           IV + "test_class_folders_match_class_index", IV + "test_images_per_class"},
     "folders not named like a wnid"),
    (add_stray_image, {IV + "test_file_names_follow_scheme"}, "extra_photo.jpg"),
    (apple_double_image, {IV + "test_file_names_follow_scheme"}, "._ILSVRC2012_val_00000001.JPEG"),
    (empty_image, {IV + "test_files_not_empty", IV + DECODE}, "empty files"),
    (not_a_jpeg, {IV + "test_files_are_jpeg", IV + DECODE}, "474946"),
    (truncated_jpeg, {IV + DECODE}, "do not decode"),
    (unsorted_class_index, {IM + "test_class_index_in_imagefolder_order", PINS}, "sorted-wnid order"),
    (extra_duplicate_label, {IM + "test_class_index_labels", IM + "test_wnid_to_label_agrees_with_class_index", PINS},
     "tench"),
    (duplicate_simple_label, {IM + "test_simple_labels", PINS}, "not unique"),
    (wrong_wnid_to_label, {IM + "test_wnid_to_label_agrees_with_class_index"}, "'carp'"),
    (unknown_wnid_in_wnid_to_label, {IM + "test_same_wnids_in_every_file"}, "n99999999 only in wnid_to_label.json"),
    (bad_synsets_line, {IM + "test_val_synsets", IM + "test_same_wnids_in_every_file", PINS,
                        IV + "test_images_in_their_labelled_folder"}, "line 5: 'tench'"),
    (missing_meta_file, {IM + "test_files_exist_and_parse"}, "wnid_to_label.json"),
    (unparsable_meta_file, {IM + "test_files_exist_and_parse"}, "do not parse"),
    (coco_file_missing, {CO + "test_image_count"}, "4 images named %012d.jpg, expected 5"),
    (coco_stray_file, {CO + "test_file_names"}, "notes.txt"),
    (coco_empty_file, {CO + "test_files_not_empty", CO + DECODE}, "empty files"),
    (coco_dangling_symlink, {CO + "test_present"}, "which does not exist"),
]


@pytest.mark.parametrize(("fault", "failing", "phrase"), FAULTS, ids=[f[0].__name__ for f in FAULTS])
def test_planted_fault_fails_the_right_checks(pytester, world, fault, failing, phrase):
    fault(world)
    run = run_checks(pytester, "-m", DATA, "--deep", world=world)
    assert run.failed() == failing, run.result.stdout.str()
    first = sorted(failing)[0] if len(failing) == 1 else next(iter(f for f in sorted(failing) if phrase in run.message(f)), None)
    assert first is not None and phrase in run.message(first), run.result.stdout.str()
    assert run.ret == 1
    assert run.report["ok"] is False


# --------------------------------------------------------------------------- legit oddities


def test_legit_oddities_pass(pytester, world):
    """CMYK, grayscale and progressive JPEGs are in the tiny world; add symlinks and OS litter."""
    from PIL import Image

    modes = {Image.open(p).mode for p in val(world).rglob("*.JPEG")}
    assert {"CMYK", "L", "RGB"} <= modes
    assert any(Image.open(p).info.get("progressive") for p in val(world).rglob("*.JPEG"))
    elsewhere = world / "elsewhere"
    elsewhere.mkdir()
    (val(world) / WNIDS[0]).rename(elsewhere / WNIDS[0])
    (val(world) / WNIDS[0]).symlink_to(elsewhere / WNIDS[0], target_is_directory=True)
    (val(world) / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (val(world) / WNIDS[1] / "._.DS_Store").write_bytes(b"\0")
    (coco(world) / ".DS_Store").write_bytes(b"\0")
    run = run_checks(pytester, "-m", DATA, "--deep", world=world)
    assert run.ret == 0, run.result.stdout.str()
    assert run.status("imagenet_val") == "ready"


def test_non_image_file_warns_but_passes(pytester, world):
    (val(world) / WNIDS[0] / "README.txt").write_text("notes")
    run = run_checks(pytester, "-m", DATA, world=world)
    assert run.ret == 0
    notes = warnings_of(run, "imagenet_val")
    assert any("README.txt" in n for n in notes)
    table = run.result.stdout.str().split("preflight readiness")[1]  # said once: in the table, not also as a warning
    assert "! non-image files in the tree" in table and "README.txt" in table
    assert "non-image files" not in run.result.stdout.str().split("preflight readiness")[0]


def test_symlinked_data_root_folder_passes(pytester, world):
    real = world / "real_val"
    val(world).rename(real)
    val(world).symlink_to(real, target_is_directory=True)
    assert run_checks(pytester, "-m", "imagenet", world=world).ret == 0


def test_face_blurred_variant_is_recognized(pytester, world):
    """`.jpg` names and three dropped images: judged by the blurred release's own facts."""
    dropped = 0
    for wnid in WNIDS:
        for p in sorted((val(world) / wnid).glob("*.JPEG")):
            p.rename(p.with_suffix(".jpg"))
    for wnid in WNIDS[:3]:
        sorted((val(world) / wnid).glob("*.jpg"))[0].unlink()
        dropped += 1
    run = run_checks(pytester, "-m", "imagenet", world=world)
    assert run.ret == 0, run.result.stdout.str()
    sorted((val(world) / WNIDS[3]).glob("*.jpg"))[0].unlink()  # a fourth one is one too many
    run = run_checks(pytester, "-m", "imagenet", world=world)
    assert run.failed() >= {"test_imagenet_val.py::test_total_images", "test_imagenet_val.py::test_each_id_exactly_once"}
    assert "face-blurred release" in run.message("test_total_images")


def test_truncated_jpeg_warns_without_deep(pytester, world):
    """Only a decode proves it, but a missing end marker is cheap to see: a warning, with the way to be sure."""
    truncated_jpeg(world)
    run = run_checks(pytester, "-m", "imagenet", world=world)
    assert run.ret == 0
    notes = warnings_of(run, "imagenet_val")
    assert any("end-of-image marker" in n and "--deep" in n for n in notes), notes


def test_deep_results_are_cached(pytester, world):
    from checks.deep import VerifyCache, decode_kind

    settle()
    assert run_checks(pytester, "-m", "imagenet", "--deep", world=world).ret == 0
    cache = VerifyCache(world / "verified")  # the tiny world's verify cache
    keys = [identity(val(world), p) for p in val(world).rglob("*.JPEG")]
    assert cache.passed(decode_kind(val(world)), keys) == {k[0] for k in keys}
    truncated_jpeg(world)  # a changed file is decoded again, not taken from the cache
    assert run_checks(pytester, "-m", "imagenet", "--deep", world=world).ret == 1


def test_quick_verdicts_are_cached_and_a_rerun_opens_no_file(world):
    """The second scan of an unchanged tree is a listing plus a stat per file: nothing is opened."""
    from checks.deep import VerifyCache
    from checks.scan import scan_tree

    settle()
    first = scan_tree(val(world), VerifyCache(world / "cache"))
    second = scan_tree(val(world), VerifyCache(world / "cache"))
    assert first.files == second.files and len(second.files) == 12
    assert (first.opened, second.opened) == (12, 0)
    assert scan_tree(val(world)).files == first.files  # the same answer as without a cache


def test_a_changed_file_is_never_vouched_for_by_the_quick_cache(pytester, world):
    """Same size, mtime set back: the inode's ctime changed, so the cached bytes are not used."""
    settle()
    assert run_checks(pytester, "-m", "imagenet", world=world).ret == 0
    path = image(world, 3)
    st = path.stat()
    path.write_bytes(b"GIF89a" + b"\0" * (st.st_size - 6))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    run = run_checks(pytester, "-m", "imagenet", world=world)
    assert run.failed() == {"test_imagenet_val.py::test_files_are_jpeg"}, run.result.stdout.str()


def cache_files(world: Path) -> list[Path]:
    """Whatever the verify cache of a tiny world keeps on disk (any format)."""
    return [p for p in world.iterdir() if p.name.startswith("verified") and p.is_file()] + \
        [p for p in world.glob("verified*/**/*") if p.is_file()]


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_verify_cache_degrades_to_reverifying_with_one_note(pytester, world, damage):
    settle()
    assert run_checks(pytester, "-m", DATA, "--deep", world=world).ret == 0
    files = cache_files(world)
    assert files
    for p in files:
        data = p.read_bytes()
        p.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x13" * len(data), "empty": b""}[damage])
    run = run_checks(pytester, "-m", DATA, "--deep", world=world)
    assert run.ret == 0, run.result.stdout.str()
    assert set(run.statuses().values()) == {"ready"}
    notes = [n for a in run.report["assets"] for n in a.get("warnings", []) if "verify cache" in n]
    assert notes and all("damaged" in n and "verified again" in n for n in notes), notes
    assert len(set(notes)) == len(notes)
    truncated_jpeg(world)  # and it still catches what it must
    assert run_checks(pytester, "-m", DATA, "--deep", world=world).ret == 1


def test_unusable_verify_cache_location_degrades_to_reverifying(pytester, world):
    """Something else where the cache goes (a file where its folder belongs): still checks."""
    (world / "verified").write_text("not a folder")
    settle()
    run = run_checks(pytester, "-m", DATA, "--deep", world=world)
    assert run.ret == 0, run.result.stdout.str()
    notes = [n for a in run.report["assets"] for n in a.get("warnings", []) if "verify cache" in n]
    assert any("cannot write the verify cache" in n for n in notes), notes
    truncated_jpeg(world)
    assert run_checks(pytester, "-m", DATA, "--deep", world=world).ret == 1


# --------------------------------------------------------------------------- selection


def test_missing_required_asset_fails_with_fix(pytester, world):
    shutil.rmtree(val(world))
    run = run_checks(pytester, "-m", "phase1 and imagenet", world=world)
    assert run.failed() == {"test_imagenet_val.py::test_present"}
    assert run.status("imagenet_val") == "missing"
    row = next(a for a in run.report["assets"] if a["name"] == "imagenet_val")
    assert "python -m fetchers --reorganize-imagenet" in row["fix"]
    run.result.stdout.fnmatch_lines(["*imagenet_val*missing*required*", "*fix: download ILSVRC2012_img_val.tar*",
                                     "      python -m fetchers --reorganize-imagenet*"])  # a line of its own


def test_absent_optional_coco_is_skipped_for_phase2(pytester, world):
    os.unlink(coco(world))
    run = run_checks(pytester, "-m", "phase2 and not gpu and not model and not env and not clip", world=world)
    assert run.ret == 0, run.result.stdout.str()
    assert run.status("coco_val2017") == "optional-absent"
    row = next(a for a in run.report["assets"] if a["name"] == "coco_val2017")
    assert "python -m fetchers --coco" in row["fix"]


def test_phase1_does_not_select_coco(pytester, world):
    run = run_checks(pytester, "-m", "phase1 and not gpu and not model and not env and not clip", world=world)
    assert "coco_val2017" not in run.statuses()
    assert not any(k.startswith("test_coco_val2017.py") for k in run.outcomes())


def test_broken_optional_asset_fails(pytester, world):
    coco_file_missing(world)
    run = run_checks(pytester, "-m", "phase2 and coco", world=world)
    assert run.ret == 1
    assert run.status("coco_val2017") == "broken"


def test_exp4_selects_imagenet_and_requires_it(pytester, world):
    shutil.rmtree(meta(world))
    run = run_checks(pytester, "-m", "exp4 and imagenet", world=world)
    assert run.status("imagenet_meta") == "missing"
    assert run.report["assets"][0]["required"] is True


def test_cross_checks_report_not_checked_without_meta(pytester, world):
    shutil.rmtree(meta(world))
    run = run_checks(pytester, "-m", "imagenet", world=world)
    assert run.outcomes()["test_imagenet_val.py::test_images_in_their_labelled_folder"] == "skipped"
    assert run.status("imagenet_val") == "not-checked"  # never "ready" when a check could not run


# --------------------------------------------------------------------------- full scale


@pytest.fixture(scope="session")
def full_scale_root(tmp_path_factory, reference_imagenet) -> Path:
    """1000 classes × 50 tiny JPEGs under the real names, labelled by the real synsets file."""
    from checks.tiny import jpeg_bytes
    from preflight_core.imagenet_files import derive_wnid_to_label

    root = tmp_path_factory.mktemp("full") / "raw"
    body = jpeg_bytes(7, size=(8, 8))
    synsets = (reference_imagenet / "ILSVRC2012_val_synsets.txt").read_text().splitlines()
    for wnid in set(synsets):
        (root / "imagenet_val" / wnid).mkdir(parents=True)
    for i, wnid in enumerate(synsets, 1):
        (root / "imagenet_val" / wnid / val_name(i)).write_bytes(body)
    (root / "imagenet_meta").mkdir()
    for name in ("imagenet_class_index.json", "ILSVRC2012_val_synsets.txt"):
        shutil.copy(reference_imagenet / name, root / "imagenet_meta" / name)
    shutil.copy(reference_imagenet / "imagenet-simple-labels.json", root / "imagenet_meta" / "imagenet_simple_labels.json")
    class_index = json.loads((reference_imagenet / "imagenet_class_index.json").read_text())
    (root / "imagenet_meta" / "wnid_to_label.json").write_text(json.dumps(derive_wnid_to_label(class_index)))
    return root


def test_full_scale_synthetic_tree_passes_with_real_facts(pytester, full_scale_root, tmp_path, monkeypatch):
    clean_environment(monkeypatch)
    monkeypatch.setenv("PREFLIGHT_CACHE_DIR", str(tmp_path / "preflight-cache"))  # not ~/.cache
    run = run_checks(pytester, "-m", "imagenet", f"--data-root={full_scale_root}")
    assert run.ret == 0, run.result.stdout.str()
    assert run.statuses() == {"imagenet_val": "ready", "imagenet_meta": "ready"}


def test_full_scale_spot_labels(full_scale_root):
    """The spot labels of docs/design.md, read through the checks' own loader."""
    from checks.imagenet import load_meta

    synsets = load_meta(full_scale_root / "imagenet_meta").synsets
    spots = {1: "n01751748", 293: "n01440764", 12978: "n02119022", 19877: "n13133613", 50000: "n02437616"}
    assert {i: synsets[i - 1] for i in spots} == spots
    for i, wnid in spots.items():
        assert (full_scale_root / "imagenet_val" / wnid / val_name(i)).is_file()


def test_full_scale_devkit_id_mixup_is_caught(pytester, full_scale_root, tmp_path, monkeypatch):
    """Reading labels as class indices (the devkit pitfall) puts images in wrong folders: caught."""
    clean_environment(monkeypatch)
    monkeypatch.setenv("PREFLIGHT_CACHE_DIR", str(tmp_path / "preflight-cache"))  # not ~/.cache
    root = tmp_path / "raw"
    shutil.copytree(full_scale_root / "imagenet_meta", root / "imagenet_meta")
    shutil.copytree(full_scale_root / "imagenet_val", root / "imagenet_val", symlinks=True)
    a, b = root / "imagenet_val" / "n01751748", root / "imagenet_val" / "n01440764"
    first_a, first_b = sorted(a.iterdir())[0], sorted(b.iterdir())[0]
    first_a.rename(b / first_a.name)
    first_b.rename(a / first_b.name)
    run = run_checks(pytester, "-m", "imagenet", f"--data-root={root}")
    assert run.failed() == {"test_imagenet_val.py::test_images_in_their_labelled_folder"}
    assert "2 of 50,000 (0.00%)" in run.message("test_images_in_their_labelled_folder")


def test_real_meta_files_pass_and_keep_known_duplicates(full_scale_root):
    from checks import imagenet
    from preflight_core.registry import ASSETS

    meta_ = imagenet.load_meta(full_scale_root / "imagenet_meta")
    facts = ASSETS["imagenet_meta"].facts
    labels = [v[1] for v in meta_.class_index.values()]
    assert labels.count("crane") == 2 and labels.count("maillot") == 2
    for check in (imagenet.check_class_index_shape, imagenet.check_class_index_labels, imagenet.check_simple_labels,
                  imagenet.check_synsets, imagenet.check_same_wnids, imagenet.check_pins):
        assert check(meta_, facts, "fix") == [], check.__name__
    assert imagenet.check_class_index_sorted(meta_, "fix") == []
    assert VAL_NAME.fullmatch("ILSVRC2012_val_00050000.JPEG")


def test_required_asset_is_missing_even_when_its_presence_check_is_deselected(pytester, world):
    shutil.rmtree(meta(world))
    run = run_checks(pytester, "-m", "imagenet", "-k", "test_imagenet_meta and not test_present", world=world)
    assert run.ret == 1 and run.status("imagenet_meta") == "missing"


def test_a_required_check_that_could_not_run_is_not_ready(pytester, world):
    """imagenet_val present, its label checks need the metadata, which is not selected: not ready, exit 1."""
    shutil.rmtree(meta(world))
    run = run_checks(pytester, "-m", "imagenet", "-k", "test_imagenet_val", world=world)
    assert run.failed() == set()
    assert run.status("imagenet_val") == "not-checked"
    assert run.report["ok"] is False and run.ret == 1
    run.result.stdout.fnmatch_lines(["*NOT READY*"])


def test_fix_commands_name_a_non_default_data_root(pytester, tmp_path, monkeypatch):
    clean_environment(monkeypatch)
    monkeypatch.setenv("PREFLIGHT_CACHE_DIR", str(tmp_path / "preflight-cache"))  # not ~/.cache
    run = run_checks(pytester, "-m", "imagenet", f"--data-root={tmp_path / 'raw'}")
    row = next(a for a in run.report["assets"] if a["name"] == "imagenet_meta")
    assert row["fix"] == f"python -m fetchers --imagenet-map --data-root={tmp_path / 'raw'}"


def test_deep_decoding_is_sharded_over_xdist_workers(pytester, world):
    run = run_checks(pytester, "-m", "imagenet", "--deep", "-n", "2", world=world)
    assert run.ret == 0, run.result.stdout.str()
    shards = {k for k in run.outcomes() if "test_images_decode" in k}
    assert len(shards) == 8 and all(k.endswith("of8]") for k in shards)


def test_sharded_deep_findings_sum_to_one_problem_line(pytester, world):
    """Two truncated images in two shards: one line with the summed count and total, not a line per shard."""
    first, second = sorted(val(world).rglob("*.JPEG"))[:2]  # the scan's order: shards 1 and 2 of 8
    for path in (first, second):
        path.write_bytes(path.read_bytes()[:300])
    run = run_checks(pytester, "-m", "imagenet", "--deep", "-n", "2", world=world)
    assert run.ret == 1
    failed = {k for k in run.failed() if "test_images_decode" in k}
    assert len(failed) == 2, failed
    problems = next(a["problems"] for a in run.report["assets"] if a["name"] == "imagenet_val")
    decode = [p for p in problems if p.startswith("images that do not decode")]
    assert len(decode) == 1 and "2 of 12 (16.67%)" in decode[0], problems
    assert first.name in decode[0] and second.name in decode[0]
    table = run.result.stdout.str()
    assert table.count("images that do not decode") == 1 and "2 of 12" in table, table


# --------------------------------------------------------------------------- the verify cache, many writers

CONCURRENT_WRITER = """
import sys, time
sys.path.insert(0, {project!r})
from pathlib import Path
from checks.deep import VerifyCache, verify_images
from checks.scan import scan_tree
root, folder, index, count, start = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
entries = scan_tree(root, VerifyCache(folder)).files[index::count]
time.sleep(max(0.0, start - time.time()))  # all writers at once
cache = VerifyCache(folder)
problems, decoded = verify_images(root, entries, cache)
assert not problems and not cache.take_notes(), (problems, cache.notes)
"""


def test_many_processes_share_the_verify_cache(world, tmp_path):
    """Six processes (think: nodes on one NFS home) decode a shard each at the same moment, no locks:
    afterwards every image passes, and one reader's merge leaves one file per namespace."""
    import subprocess
    import sys

    from checks.deep import VerifyCache, decode_kind
    from tests.checkrun import PROJECT

    settle()
    folder = tmp_path / "shared-cache"
    script = tmp_path / "writer.py"
    script.write_text(CONCURRENT_WRITER.format(project=str(PROJECT)))
    start = time.time() + 2
    procs = [subprocess.Popen([sys.executable, str(script), str(val(world)), str(folder), str(i), "6", str(start)])
             for i in range(6)]
    assert [p.wait(timeout=120) for p in procs] == [0] * 6
    keys = [identity(val(world), p) for p in val(world).rglob("*.JPEG")]
    cache = VerifyCache(folder)
    assert cache.passed(decode_kind(val(world)), keys) == {k[0] for k in keys}
    cache.record(decode_kind(val(world)), keys[:1])  # a writer merges what it read into one file
    part = next(p for p in folder.iterdir() if p.name.startswith("decode-"))
    assert len(list(part.glob("*.json"))) == 1
    assert not list(part.glob(".tmp-*")) and not cache.take_notes()


def test_no_entry_can_vouch_for_a_changed_file(world, tmp_path):
    """Whatever a merge brings together, an entry matches only the content identity it was recorded for."""
    from checks.deep import VerifyCache, decode_kind

    settle()
    path = image(world, 1)
    kind, old = decode_kind(val(world)), identity(val(world), path)
    node_a, node_b = VerifyCache(tmp_path / "c"), VerifyCache(tmp_path / "c")
    node_a.record(kind, [old])
    data = path.read_bytes()
    path.write_bytes(data[:-2] + b"\0\0")  # same size …
    os.utime(path, ns=(old[2], old[2]))  # … and the old mtime: only the ctime tells
    new = identity(val(world), path)
    assert new[1:3] == old[1:3] and new != old
    assert node_b.passed(kind, [new]) == set()
    settle()
    node_b.record(kind, [new])  # both now in the cache: each matches only its own identity
    assert VerifyCache(tmp_path / "c").passed(kind, [new]) == {new[0]}
    assert VerifyCache(tmp_path / "c").passed(kind, [old]) == set()  # the later entry replaced the stale one


def test_fresh_files_are_not_cached(world, tmp_path):
    """A file changed within the racy window could change again unseen in the same timestamp tick."""
    from checks.deep import VerifyCache, decode_kind

    path = image(world, 1)
    path.write_bytes(path.read_bytes())  # just now
    kind, key = decode_kind(val(world)), identity(val(world), path)
    VerifyCache(tmp_path / "c").record(kind, [key])
    assert VerifyCache(tmp_path / "c").passed(kind, [key]) == set()
