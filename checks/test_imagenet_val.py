"""ImageNet val: 1000 class folders × 50 images, each image where its label says."""

import dataclasses

import pytest

from checks import imagenet
from checks.deep import check_decodes
from checks.verbs import expect_none

pytestmark = pytest.mark.asset("imagenet_val")


@pytest.fixture(scope="session")
def val_scan(checkup):
    """One scan per session, through the verify cache: unchanged files are not opened again."""
    world = checkup.world
    return imagenet.scan_val(world.path("imagenet_val"), world.facts_for("imagenet_val"), checkup.verify_cache)


@pytest.fixture
def tree(asset, request):
    asset.needs_present()
    tree = request.getfixturevalue("val_scan")
    asset.record_size(tree.total_bytes, len(tree.files))
    return tree


@pytest.fixture
def val_fix(tree, asset, checkup):
    """A few damaged images: re-extract them from the tar (--repair); else the whole-tree fix."""
    return checkup.val_fix(asset.spec, imagenet.few_damaged(tree))


def test_present(asset):
    asset.check_present()


def test_tree_can_be_walked(tree, asset):
    expect_none(imagenet.check_walkable(tree.unwalkable, tree.root))


def test_files_are_readable(tree, val_fix):
    expect_none(imagenet.check_readable(tree.files, tree.root, val_fix))


def test_not_one_level_too_deep(tree, asset):
    expect_none(imagenet.check_not_nested(tree, asset.fix))


def test_class_folder_count(tree, asset):
    expect_none(imagenet.check_class_folder_count(tree, asset.fix))


def test_class_folders_are_wnids(tree, asset):
    expect_none(imagenet.check_class_folder_names(tree, asset.fix))


def test_class_folders_match_class_index(tree, asset, checkup):
    wnids = checkup.meta.class_index_wnids
    asset.needs("imagenet_meta", wnids, "comparing class folders with the class index")
    expect_none(imagenet.check_class_folders_match(tree, wnids, imagenet.CLASS_INDEX, asset.fix))


def test_images_per_class(tree, val_fix):
    expect_none(imagenet.check_images_per_class(tree, val_fix))


def test_total_images(tree, val_fix):
    expect_none(imagenet.check_total_images(tree, val_fix))


def test_file_names_follow_scheme(tree, asset):
    expect_none(imagenet.check_file_names(tree, asset.fix))


def test_each_id_exactly_once(tree, val_fix):
    expect_none(imagenet.check_ids(tree, val_fix))


def test_images_in_their_labelled_folder(tree, asset, checkup):
    synsets = checkup.meta.synsets
    asset.needs("imagenet_meta", synsets, f"checking labels against {imagenet.VAL_SYNSETS}")
    expect_none(imagenet.check_labels(tree, synsets, asset.fix))


def test_no_stray_files(tree, asset):
    for finding in imagenet.check_other_files(tree):
        asset.warn(finding.message())


def test_files_not_empty(tree, val_fix):
    expect_none(imagenet.check_not_empty(tree.image_entries, tree.root, val_fix))


def test_files_are_plausibly_sized(tree, asset):
    expect_none(imagenet.check_sizes(tree.image_entries, tree.root, asset.fix))


def test_files_are_jpeg(tree, asset, val_fix):
    for note in tree.notes:  # the quick verdicts' cache, when it was damaged or cannot be written
        asset.warn(note)
    expect_none(imagenet.check_jpeg_signature(tree.image_entries, tree.root, val_fix))


def test_files_end_like_jpeg(tree, asset, checkup):
    if checkup.value("deep"):  # test_images_decode decodes them: its finding (and fix) is the one that counts
        return
    for finding in imagenet.check_jpeg_end(tree.image_entries, tree.root):
        asset.warn(finding.message())


@pytest.mark.deep
def test_images_decode(deep, tree, asset, checkup, deep_shard):
    findings = check_decodes(tree.root, tree.image_entries, checkup.verify_cache, "", deep_shard)
    if findings:
        fix = checkup.val_fix(asset.spec, imagenet.few_damaged(tree, sum(f.n for f in findings)))
        findings = [dataclasses.replace(f, fix=fix) for f in findings]
    for note in checkup.verify_cache.take_notes():
        asset.warn(note)
    expect_none(findings)
