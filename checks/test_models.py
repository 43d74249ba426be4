"""The four models: fully cached, load offline with the right classes, sane embeddings on --device."""

import pytest

from checks import models
from checks.plugin import for_assets
from core.hf_cache import cache_report
from core.registry import ASSETS

MODELS = for_assets(*(name for name, a in ASSETS.items() if a.kind == "model"))


@pytest.fixture
def cache(asset):
    asset.needs_present()
    report = cache_report(asset.facts, asset.world.hf_cache)
    asset.record_size(report.bytes)
    return report


def load(asset, cache, checkup):
    """The model, loaded once per process; a model whose cache is incomplete is not loaded at all."""
    if not cache.complete:
        pytest.skip(f"not-checked: loading {asset.name} needs a complete cache (see test_cache_complete)")
    return models.load_model(asset.facts, asset.world.hf_cache, checkup.device, asset.world.open_clip_config_dir)




@pytest.mark.parametrize("model", MODELS)
def test_present(asset, model):
    asset.check_present()


@pytest.mark.parametrize("model", MODELS)
def test_cache_complete(cache, model):
    problems = cache.problems()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.mark.model
@pytest.mark.parametrize("model", MODELS)
def test_loads_offline_with_the_right_classes(asset, cache, checkup, model, gpu_ready):
    try:
        loaded = load(asset, cache, checkup)
    except models.ModelLoadError as e:
        error = str(e)
    else:
        error = None
    if error:
        pytest.fail(error, pytrace=False)
    asset.note_info(f"loaded offline in {loaded.load_seconds:.2f} s, {loaded.param_bytes / 2**20:,.1f} MiB of "
                    f"weights ({', '.join(f'{k} {v}' for k, v in loaded.classes.items())})")


@pytest.mark.model
@pytest.mark.gpu
@pytest.mark.parametrize("model", MODELS)
def test_forward_pass(asset, cache, checkup, model, gpu_ready):
    try:
        loaded = load(asset, cache, checkup)
    except models.ModelLoadError:
        pytest.skip(f"not-checked: {asset.name} did not load (see test_loads_offline_with_the_right_classes)")
    result = models.forward_check(loaded, asset.facts)
    for note in result.notes:
        asset.note(note)
    if result.problems:
        pytest.fail("\n".join(result.problems), pytrace=False)
    memory = f", peak {result.cuda_max_allocated / 2**20:,.0f} MiB on the GPU" if result.cuda_max_allocated else ""
    asset.note_info(f"forward on {checkup.device}: dim {result.image_embed_dim}, {result.seconds * 1000:.0f} ms{memory}")


@pytest.mark.deep
@pytest.mark.parametrize("model", MODELS)
def test_weight_blobs_match_their_etags(deep, cache, asset, checkup, model):
    if cache.snapshot is None:
        pytest.skip(f"not-checked: {asset.name} has no snapshot to hash")
    problems = models.verify_blobs(cache.snapshot, asset.facts.files, checkup.verify_cache.path)
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)
