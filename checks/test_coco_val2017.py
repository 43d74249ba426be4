"""COCO val2017: 5,000 JPEGs named %012d.jpg (a symlink into the kagglehub cache is fine)."""

import pytest

from checks import coco
from checks.deep import check_decodes
from checks.imagenet import (
    check_jpeg_end,
    check_jpeg_signature,
    check_not_empty,
    check_readable,
    check_sizes,
    check_walkable,
)
from checks.verbs import expect_none

pytestmark = pytest.mark.asset("coco_val2017")


@pytest.fixture(scope="session")
def coco_scan(checkup):
    """One scan per session, through the verify cache: unchanged files are not opened again."""
    world = checkup.world
    return coco.scan_coco(world.path("coco_val2017"), world.facts_for("coco_val2017"), checkup.verify_cache)


@pytest.fixture
def tree(asset, request):
    asset.needs_present()
    tree = request.getfixturevalue("coco_scan")
    asset.record_size(sum(f.size for f in tree.files), len(tree.files))
    return tree


def test_present(asset):
    asset.check_present()


def test_tree_can_be_walked(tree, asset):
    expect_none(check_walkable(tree.unwalkable, tree.root))


def test_files_are_readable(tree, asset):
    expect_none(check_readable(tree.files, tree.root, f"delete the folder it points to and run {asset.fix}"))


def test_image_count(tree, asset):
    expect_none(coco.check_count(tree, asset.fix))


def test_file_names(tree, asset):
    expect_none(coco.check_names(tree, asset.fix))


def test_files_not_empty(tree, asset):
    expect_none(check_not_empty(tree.images, tree.root, asset.fix))


def test_files_are_plausibly_sized(tree, asset):
    expect_none(check_sizes(tree.images, tree.root, asset.fix))


def test_files_are_jpeg(tree, asset):
    for note in tree.notes:  # the quick verdicts' cache, when it was damaged or cannot be written
        asset.warn(note)
    expect_none(check_jpeg_signature(tree.images, tree.root, asset.fix))


def test_files_end_like_jpeg(tree, asset):
    for finding in check_jpeg_end(tree.images, tree.root):
        asset.warn(finding.message())


@pytest.mark.deep
def test_images_decode(deep, tree, asset, checkup, deep_shard):
    findings = check_decodes(tree.root, tree.images, checkup.verify_cache,
                             f"delete the folder it points to and run {asset.fix}", deep_shard)
    for note in checkup.verify_cache.take_notes():
        asset.warn(note)
    expect_none(findings)
