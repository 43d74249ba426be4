"""The golden check: does this stack reproduce each model's published zero-shot top-1 on ImageNet val?

Marked `golden` and the model's family, not the phases: `pytest -m golden`, `pytest -m phase1 --golden`.
"""

import pytest

from checks import golden, models
from checks.verbs import for_assets
from preflight_core.findings import Fix, Status
from preflight_core.hf_cache import cache_report, weights_identity
from preflight_core.presence import asset_state
from preflight_core.registry import ASSETS

MODELS = for_assets(*(name for name, a in ASSETS.items() if a.kind == "model"))
GOLDEN_FIX = Fix("compare this stack's recipe with the published one (README: the golden check): library versions, "
                 "tokenizer, preprocessing, class order and the val tree's labels; --golden-per-class=50 measures "
                 "on the whole val set")


def first_fix(asset, checkup, other: str, why: str) -> None:
    """Not-checked, naming the row to fix first (and its fix): the golden number means nothing without it."""
    fix = checkup.fix(ASSETS[other])
    asset.skip(Status.NOT_CHECKED, f"the golden check needs {other}, which {why}: fix the {other} row first"
               + (f" ({fix.text})" if fix else ""))


def golden_inputs(asset, checkup):
    """The sample, the recipe and the loaded model; not-checked (naming the row) when one is not ready."""
    world = asset.world
    for other in ("imagenet_val", "imagenet_meta"):
        state, detail = asset_state(world, ASSETS[other])
        if state != "present":
            first_fix(asset, checkup, other, f"is {state} ({detail})")
    val_facts = world.facts_for("imagenet_val")
    meta = checkup.meta
    if not meta.class_index:
        first_fix(asset, checkup, "imagenet_meta", f"has no readable {ASSETS['imagenet_meta'].title} class index")
    wnids = sorted({entry[0] for entry in meta.class_index.values() if isinstance(entry, list) and entry})
    if len(wnids) != val_facts.n_classes:
        first_fix(asset, checkup, "imagenet_meta", f"names {len(wnids)} classes, not {val_facts.n_classes}")
    per_class = min(checkup.value("golden-per-class"), val_facts.per_class)
    sample = golden.take_sample(world.path("imagenet_val"), wnids, per_class)
    if sample.short:
        first_fix(asset, checkup, "imagenet_val", f"has classes with fewer than {per_class} images: "
                  f"{', '.join(sample.short[:5])}{' …' if len(sample.short) > 5 else ''}")
    asset.needs_present()
    facts = asset.facts
    cache = cache_report(facts, world.hf_cache)
    if not cache.complete:
        asset.skip(Status.NOT_CHECKED, f"{asset.name}'s cache is incomplete (see test_cache_complete): fix it first")
    identity = weights_identity(facts, world.hf_cache)
    if not identity.published:
        asset.skip(Status.NOT_CHECKED, f"{asset.name}'s weights are not the published ones ({identity.status}; see "
                   "test_published_weights): fix that first")
    try:
        loaded = models.load_model(facts, world.hf_cache, checkup.load_device, world.open_clip_config_dir)
    except models.ModelLoadError:
        asset.skip(Status.NOT_CHECKED, f"{asset.name} did not load (see test_loads_offline_with_the_right_classes)")
    if models.forward_check(loaded, facts).findings:
        asset.skip(Status.NOT_CHECKED, f"{asset.name}'s forward pass fails (see test_forward_pass): fix that first")
    recipe = golden.published_recipe(val_facts)
    if len(recipe.classnames) != len(wnids):
        asset.fail(f"the recipe ({recipe.source}) names {len(recipe.classnames)} classes, the val tree has "
                   f"{len(wnids)}", GOLDEN_FIX)
    project = golden.project_recipe(meta.wnid_to_label, wnids) if meta.wnid_to_label else None
    # The classifier cache trusts the blob's name (its sha256) only with the identity of its content: a blob
    # rewritten in place (corrupted, then repaired by a fetch) never reuses a classifier built from other bytes.
    st = (cache.snapshot / identity.weights_file).resolve().stat()
    weights_key = f"{identity.weights_sha256}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}:{st.st_ctime_ns}"
    return sample, recipe, project, loaded, weights_key


@pytest.mark.golden
@pytest.mark.model
@pytest.mark.parametrize("model", MODELS)
def test_zero_shot(asset, checkup, model, gpu_ready, capsys):
    sample, recipe, project, loaded, weights_key = golden_inputs(asset, checkup)
    encoder = golden.encoder_for(loaded, asset.facts)
    pinned = encoder.token_problems() + encoder.scale_problems()
    from tqdm.auto import tqdm

    with capsys.disabled(), tqdm(total=sample.n, desc=f"golden {asset.name}", unit="img", disable=None,
                                 leave=False) as bar:
        result = golden.zero_shot(encoder, sample, recipe, asset.world.facts_for("imagenet_val"),
                                  checkup.verify_cache.folder, weights_key, project, progress=bar.update)
    asset.record_field("zero_shot", result.as_json())
    asset.info(result.line())
    if not asset.facts.token_pin_ids:
        asset.info(f"token ids of {asset.facts.token_pin_prompt!r}: structure checked, ids not pinned in the registry")
    if result.top1_project_labels is not None:
        asset.info(f"information, not judged: {result.top1_project_labels:.1f}% with the project's "
                   f"{project.source}")
    if result.suspiciously_high:
        asset.warn(result.warning())
    problems = ([] if result.passed else [result.failure(asset.facts.library)]) + pinned
    if problems:
        asset.fail("\n".join(problems), GOLDEN_FIX)
