"""COCO val2017: 5,000 JPEGs named %012d.jpg (a symlink into the kagglehub cache is fine)."""

import pytest

from checks import coco
from checks.deep import check_decodes, shard
from checks.imagenet import check_jpeg_end, check_jpeg_signature, check_not_empty
from checks.plugin import expect_none

pytestmark = pytest.mark.asset("coco_val2017")


@pytest.fixture
def tree(asset, checkup):
    asset.needs_present()
    tree = checkup.coco_tree
    asset.record_size(sum(f.size for f in tree.files), len(tree.files))
    return tree


def test_present(asset):
    asset.check_present()


def test_image_count(tree, asset):
    expect_none(coco.check_count(tree, asset.fix))


def test_file_names(tree, asset):
    expect_none(coco.check_names(tree, asset.fix))


def test_files_not_empty(tree, asset):
    expect_none(check_not_empty(tree.images, tree.root, asset.fix))


def test_files_are_jpeg(tree, asset):
    expect_none(check_jpeg_signature(tree.images, tree.root, asset.fix))


def test_files_end_like_jpeg(tree, asset):
    for finding in check_jpeg_end(tree.images, tree.root):
        asset.note(finding.message())


@pytest.mark.deep
def test_images_decode(deep, tree, asset, checkup, deep_shard):
    entries = shard(tree.images, *deep_shard)
    expect_none(check_decodes(tree.root, entries, checkup.verify_cache,
                              f"delete the folder it points to and run {asset.fix}"))
