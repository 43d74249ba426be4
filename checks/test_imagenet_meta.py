"""ImageNet metadata: four files that parse, agree with each other and match the pinned versions."""

import pytest

from checks import imagenet
from checks.verbs import expect_none

pytestmark = pytest.mark.asset("imagenet_meta")


@pytest.fixture
def meta(asset, checkup):
    asset.needs_present()
    meta = checkup.meta
    asset.record_size(sum(len(data) for data in meta.raw.values()))
    return meta


def test_present(asset):
    asset.check_present()


def test_files_exist_and_parse(meta, asset):
    expect_none(imagenet.check_meta_files_present(meta, asset.fix))


def test_files_match_pinned_versions(meta, asset):
    expect_none(imagenet.check_pins(meta, asset.facts, asset.fix))


def test_class_index_shape(meta, asset):
    expect_none(imagenet.check_class_index_shape(meta, asset.facts, asset.fix))


def test_class_index_in_imagefolder_order(meta, asset):
    expect_none(imagenet.check_class_index_sorted(meta, asset.fix))


def test_class_index_labels(meta, asset):
    expect_none(imagenet.check_class_index_labels(meta, asset.facts, asset.fix))


def test_simple_labels(meta, asset):
    expect_none(imagenet.check_simple_labels(meta, asset.facts, asset.fix))


def test_val_synsets(meta, asset):
    expect_none(imagenet.check_synsets(meta, asset.facts, asset.fix))


def test_same_wnids_in_every_file(meta, asset):
    expect_none(imagenet.check_same_wnids(meta, asset.facts, asset.fix))


def test_wnid_to_label_agrees_with_class_index(meta, asset):
    expect_none(imagenet.check_wnid_to_label(meta, asset.fix))
