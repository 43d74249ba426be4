"""The four models: fully cached, the published weights, load offline with the right classes, sane embeddings."""

import pytest

from checks import models
from checks.verbs import expect_none, for_assets
from preflight_core.findings import Status
from preflight_core.hf_cache import Identity, cache_report, weights_identity
from preflight_core.registry import ASSETS, AssetKind

MODELS = for_assets(*(name for name, a in ASSETS.items() if a.kind is AssetKind.MODEL))


@pytest.fixture
def model_cache(asset, checkup):
    asset.needs_present()
    # Every small file (configs, tokenizers) is hashed against its etag name; a re-run costs a stat each.
    report = cache_report(asset.facts, asset.world.hf_cache, checkup.verify_cache)
    asset.record_size(report.bytes)
    # Provenance on every model row, whichever of its checks run: the snapshot's commit and the weights' digest.
    identity = weights_identity(asset.facts, asset.world.hf_cache)
    asset.record_field("revision", identity.revision)
    asset.record_field("weights_sha256", identity.weights_sha256)
    asset.info(identity.summary())
    return report


def load(asset, model_cache, checkup):
    """The model, loaded once per process; a model whose cache is incomplete is not loaded at all."""
    if not model_cache.complete:
        asset.skip(Status.NOT_CHECKED, f"loading {asset.name} needs a complete cache (see test_cache_complete)")
    return models.load_model(asset.facts, asset.world.hf_cache, checkup.load_device, asset.world.open_clip_config_dir)


@pytest.mark.parametrize("model", MODELS)
def test_present(asset, model):
    asset.check_present()


@pytest.mark.parametrize("model", MODELS)
def test_cache_complete(model_cache, model):
    expect_none(model_cache.findings())


@pytest.mark.parametrize("model", MODELS)
def test_published_weights(asset, model_cache, model):
    """refs/main's weight file is the published one, by its blob's name and size: no torch, no hashing (--deep hashes)."""
    identity = weights_identity(asset.facts, asset.world.hf_cache)
    broken = dict(model_cache.broken)
    if identity.status is Identity.ABSENT or identity.weights_file in broken:
        asset.skip(Status.NOT_CHECKED, f"{asset.name}'s weight file is missing or broken in refs/main's snapshot "
                   "(see test_cache_complete)")
    if identity.note:
        asset.warn(identity.note)
    if identity.problem:
        asset.fail(identity.problem, identity.fix)


@pytest.mark.model
@pytest.mark.parametrize("model", MODELS)
def test_loads_offline_with_the_right_classes(asset, model_cache, checkup, model, gpu_ready):
    try:
        loaded = load(asset, model_cache, checkup)
    except models.ModelLoadError as e:
        asset.fail(e.problem, e.fix)
    asset.info(f"loaded offline on {loaded.device} in {loaded.load_seconds:.2f} s, {loaded.param_bytes / 2**20:,.1f} MiB of "
                    f"weights ({', '.join(f'{k} {v}' for k, v in loaded.classes.items())})")


@pytest.mark.model
@pytest.mark.gpu
@pytest.mark.parametrize("model", MODELS)
def test_forward_pass(asset, model_cache, checkup, model, gpu_ready):
    try:
        loaded = load(asset, model_cache, checkup)
    except models.ModelLoadError:
        asset.skip(Status.NOT_CHECKED, f"{asset.name} did not load (see test_loads_offline_with_the_right_classes)")
    result = models.forward_check(loaded, asset.facts)
    for note in result.notes:
        asset.warn(note)
    expect_none(result.findings)
    memory = f", peak {result.cuda_max_allocated / 2**20:,.0f} MiB on the GPU" if result.cuda_max_allocated else ""
    asset.info(f"forward on {checkup.load_device}: dim {result.image_embed_dim}, {result.seconds * 1000:.0f} ms{memory}")


@pytest.mark.deep
@pytest.mark.parametrize("model", MODELS)
def test_weight_blobs_match_their_etags(deep, model_cache, asset, checkup, model):
    if model_cache.snapshot is None:
        asset.skip(Status.NOT_CHECKED, f"{asset.name} has no snapshot to hash")
    expect_none(models.blob_findings(model_cache.snapshot, asset.facts.files, checkup.verify_cache.folder))
