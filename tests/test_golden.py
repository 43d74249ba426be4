"""The golden check: the trained tiny models pass; planted faults fail exactly the golden check, naming the cause."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from checks import golden
from checks.tiny import TINY_CLASSNAMES, TINY_SHAPES, WORLD_FILE, build_tiny_world, tiny_labels
from preflight_core.imagenet_files import val_name
from tests.checkrun import run_checks

pytestmark = pytest.mark.torch  # builds or loads models: not in the light run at the floors

GOLDEN = "test_golden.py::test_zero_shot"
MODELS = ("siglip2_base", "siglip2_so400m", "clip_b32", "clip_l14")


def edit_facts(world: Path, asset: str, **changes) -> None:
    raw = json.loads((world / WORLD_FILE).read_text())
    raw["facts"][asset].update(changes)
    (world / WORLD_FILE).write_text(json.dumps(raw))


def zero_shot(run, asset: str) -> dict:
    return next(a for a in run.report["assets"] if a["name"] == asset)["zero_shot"]


# --------------------------------------------------------------------------- through pytest


def test_trained_tiny_models_pass_and_a_second_run_reuses_the_classifiers(pytester, world):
    run = run_checks(pytester, "-m", "golden", world=world)
    assert run.ret == 0, run.result.stdout.str()
    assert run.statuses() == {m: "ready" for m in MODELS}
    assert set(run.outcomes()) == {f"{GOLDEN}[{m}]" for m in MODELS}
    z = zero_shot(run, "clip_b32")
    assert set(z) == {"top1", "n", "per_class", "published", "source", "allowed_drop", "seconds",
                      "classifier_cached", "top1_project_labels"}
    assert (z["n"], z["per_class"], z["published"], z["classifier_cached"]) == (12, 3, 91.67, False)
    run.result.stdout.fnmatch_lines(["*clip_b32*ready*", "*zero-shot 91.7% on 12 (3/class), published 91.7%*",
                                     "*information, not judged:*project's wnid_to_label.json*"])
    again = run_checks(pytester, "-m", "golden", world=world)
    assert again.ret == 0 and all(zero_shot(again, m)["classifier_cached"] for m in MODELS)
    assert zero_shot(again, "clip_b32")["top1"] == z["top1"]


def test_golden_selection(pytester, world):
    """`-m golden` and family: four / two; not in a phase run unless --golden, which applies its requirements."""
    clip = run_checks(pytester, "-m", "golden and clip", world=world)
    assert set(clip.outcomes()) == {f"{GOLDEN}[clip_b32]", f"{GOLDEN}[clip_l14]"}
    phase = run_checks(pytester, "-m", "phase2 and siglip2", world=world)
    assert not any(k.startswith("test_golden.py") for k in phase.outcomes())
    with_golden = run_checks(pytester, "-m", "phase2 and siglip2 and golden", "--golden", world=world)
    assert set(with_golden.outcomes()) == {f"{GOLDEN}[siglip2_base]", f"{GOLDEN}[siglip2_so400m]"}
    assert {a["name"]: a["required"] for a in with_golden.report["assets"]} == \
        {"siglip2_base": False, "siglip2_so400m": False}  # SigLIP2 is optional in phase 2
    # The verdict and the JSON say what the run covered: the phase's checks and the golden ones.
    assert with_golden.report["selection"] == "-m 'phase2 and siglip2 and golden' with --golden"
    assert "with --golden" in with_golden.report["verdict"]


def test_a_run_without_m_includes_the_golden_checks(pytester, world):
    run = run_checks(pytester, world=world)
    assert run.ret == 0, run.result.stdout.str()
    assert {f"{GOLDEN}[{m}]" for m in MODELS} <= set(run.outcomes())
    assert all("zero_shot" in a for a in run.report["assets"] if a["name"] in MODELS)


def test_golden_needs_imagenet_first(pytester, world):
    shutil.rmtree(world / "data" / "raw" / "imagenet_val")
    run = run_checks(pytester, "-m", "golden and clip", world=world)
    assert run.ret == 1 and run.statuses() == {"clip_b32": "not-checked", "clip_l14": "not-checked"}
    assert "needs imagenet_val, which is absent" in run.message(f"{GOLDEN}[clip_b32]")
    assert "fix the imagenet_val row first" in run.report["assets"][0]["problems"][0]


def random_impostor(tmp_path: Path) -> Path:
    """Random weights whose pins agree (the tiny world pins what it writes): only the golden check can tell."""
    build_tiny_world(tmp_path / "impostor", random_weights=frozenset({"clip_b32"}))
    return tmp_path / "impostor"


def bgr_tree(world: Path) -> None:
    """The val images stored with red and blue swapped (as a cv2-based tool would write them)."""
    from PIL import Image

    for path in (world / "data" / "raw" / "imagenet_val").rglob("*.JPEG"):
        with Image.open(path) as im:
            mode = im.mode
            swapped = golden.bgr(im.convert("RGB"))
        swapped.convert(mode).save(path, "JPEG", quality=90)


def mislabelled_tree(world: Path) -> None:
    """Folders consistent with a wrong synsets file: two classes' images swapped between their folders."""
    val = world / "data" / "raw" / "imagenet_val"
    a, b = sorted(TINY_SHAPES)[:2]
    (val / a).rename(val / "tmp")
    (val / b).rename(val / a)
    (val / "tmp").rename(val / b)


FAULTS = {
    "random_impostor": ("clip_b32", "below the published"),
    "bgr_tree": (None, "BGR/RGB swapped"),
    "mislabelled_tree": (None, "a wrong synsets file"),
    "wrong_template": (None, "below the published"),
    "wrong_class_order": (None, "sorted-wnid order"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_planted_fault_fails_the_golden_check(pytester, world, tmp_path, fault):
    only, phrase = FAULTS[fault]
    if fault == "random_impostor":
        world = random_impostor(tmp_path)
    elif fault == "wrong_template":  # a template that lost its class name (a missing f-string: "{c}" stays literal)
        edit_facts(world, "imagenet_val", golden_templates=["a photo of a {{c}}."])
    elif fault == "wrong_class_order":  # the names listed in another order than the sorted wnids
        edit_facts(world, "imagenet_val", golden_classnames=list(reversed(TINY_CLASSNAMES)))
    else:
        globals()[fault](world)
    run = run_checks(pytester, "-m", "golden or siglip2 or clip", world=world)
    failing = {only} if only else set(MODELS)
    assert run.failed() == {f"{GOLDEN}[{m}]" for m in failing}, run.result.stdout.str()
    for m in failing:
        message = run.message(f"{GOLDEN}[{m}]")
        assert "zero-shot top-1" in message and phrase in message, message
        assert run.status(m) == "broken"
    assert run.ret == 1


# --------------------------------------------------------------------------- the parts


def test_margin_arithmetic():
    """The design notes: at k = 5 about 2.5 / 2.3 / 2.2 / 2.0 points; the whole set leaves only the 0.5."""
    drops = [golden.allowed_drop(p, 5000, 5) for p in (63.3, 75.5, 78.2, 84.1)]
    assert drops == pytest.approx([2.46, 2.25, 2.18, 1.99], abs=0.005)
    se = golden.standard_error(63.3, 5000, 5, 50)
    assert se == pytest.approx(((0.633 * 0.367 / 5000) * 45 / 49) ** 0.5)
    assert golden.allowed_drop(63.3, 50_000, 50) == 0.5
    result = golden.ZeroShot(60.9, 5000, 5, 63.3, "open_clip", drops[0], 1.0, False, n_classes=1000)
    assert result.passed and not result.suspiciously_high  # 63.3 − 2.46 = 60.84
    assert not golden.ZeroShot(60.8, 5000, 5, 63.3, "s", drops[0], 1.0, False).passed
    assert golden.ZeroShot(65.8, 5000, 5, 63.3, "s", drops[0], 1.0, False).suspiciously_high


def test_sample_takes_the_first_k_per_class_in_val_id_order(tmp_path):
    ids = {"n02": [40, 7, 1000, 12, 9], "n01": [3, 30000, 2, 11]}
    for wnid, numbers in ids.items():
        (tmp_path / wnid).mkdir()
        for i in numbers:
            (tmp_path / wnid / val_name(i)).write_bytes(b"")
        (tmp_path / wnid / "notes.txt").write_bytes(b"")
    sample = golden.take_sample(tmp_path, ["n02", "n01"], 3)
    assert sample.wnids == ("n01", "n02") and sample.labels == (0, 0, 0, 1, 1, 1)
    assert [golden.val_id(p.name) for p in sample.paths] == [2, 3, 11, 7, 9, 12]
    assert golden.take_sample(tmp_path, ["n01", "n02"], 5).short == ("n01 (4)",)
    # the face-blurred release: lower-case .jpg, same rule
    (tmp_path / "n03").mkdir()
    for i in (5, 4):
        (tmp_path / "n03" / f"ILSVRC2012_val_{i:08d}.jpg").write_bytes(b"")
    assert [p.name for p in golden.take_sample(tmp_path, ["n03"], 1).paths] == ["ILSVRC2012_val_00000004.jpg"]


def test_sample_of_the_tiny_tree_has_k_per_class():
    per = {}
    for image_id, wnid in enumerate(tiny_labels(), 1):
        per.setdefault(wnid, []).append(val_name(image_id))
    assert all(len(v) == 3 for v in per.values())


def test_siglip_canonicalisation():
    assert golden.canonicalize_siglip("A Photo of the_Great  White-Shark.") == "a photo of the great whiteshark"


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    return build_tiny_world(tmp_path_factory.mktemp("golden") / "w")


def encoder_for(world, name: str, **kw) -> golden.Encoder:
    from checks.models import load_model

    facts = world.facts[name]
    return golden.encoder_for(load_model(facts, world.hf_cache, "cpu", world.open_clip_config_dir), facts, **kw)


@pytest.mark.parametrize("name", MODELS)
def test_token_pin_passes_with_the_recipe(tiny_world, name):
    encoder = encoder_for(tiny_world, name)
    assert encoder.token_problems() == [] and encoder.scale_problems() == []


def test_token_pin_fails_without_lowercase_or_max_length_padding(tiny_world):
    not_lowercased = encoder_for(tiny_world, "siglip2_base", canonicalize=lambda t: t.upper())
    assert any("differ from the pin" in p for p in not_lowercased.token_problems())
    not_padded = encoder_for(tiny_world, "siglip2_base", padding="longest")
    assert any("expected 64" in p for p in not_padded.token_problems())


def test_a_changed_template_set_or_tokenizer_changes_the_classifier_key(tiny_world, tmp_path):
    encoder = encoder_for(tiny_world, "siglip2_base")
    recipe = golden.published_recipe(tiny_world.facts["imagenet_val"])
    sha = tiny_world.facts["siglip2_base"].weights_sha256
    first, cached = golden.build_classifier(encoder, recipe, tmp_path, sha)
    again, cached_again = golden.build_classifier(encoder, recipe, tmp_path, sha)
    assert (cached, cached_again) == (False, True) and bool((first == again).all())
    fewer = golden.Recipe(recipe.classnames, recipe.templates[:2], "fewer templates")
    assert golden.build_classifier(encoder, fewer, tmp_path, sha)[1] is False
    other_tokenizer = encoder_for(tiny_world, "siglip2_base", canonicalize=str)  # prompts no longer canonicalised
    assert golden.build_classifier(other_tokenizer, recipe, tmp_path, sha)[1] is False
    ids = encoder.tokenize(recipe.prompts())
    assert golden.classifier_key(sha, ids, "float32", "cpu") != golden.classifier_key(sha, ids, "bfloat16", "cpu")
    assert golden.classifier_key(sha, ids, "float32", "cpu", {"transformers": "4.50"}) != \
        golden.classifier_key(sha, ids, "float32", "cpu", {"transformers": "5.0"})
    assert len(list((tmp_path / golden.CLASSIFIER_DIR).glob("*.safetensors"))) == 3


def test_project_recipe_is_information(tiny_world):
    meta = json.loads((tiny_world.data_root / "imagenet_meta" / "wnid_to_label.json").read_text())
    recipe = golden.project_recipe(meta, sorted(TINY_SHAPES))
    assert recipe.prompts()[0] == "a photo of a tench." and len(recipe.templates) == 1


@pytest.mark.parametrize(("cli", "env", "ini", "expected"), [
    (None, None, None, 5), (None, None, "3", 3), (None, "2", "3", 2), ("1", "2", "3", 1)])
def test_golden_per_class_precedence(cli, env, ini, expected):
    from preflight_core.options import OPTIONS, resolve

    environ = {"PREFLIGHT_GOLDEN_PER_CLASS": env} if env else {}
    assert resolve(OPTIONS["golden-per-class"], cli, environ, ini).value == expected


def test_golden_per_class_invalid_names_its_source():
    from preflight_core.options import OPTIONS, OptionError, resolve

    with pytest.raises(OptionError, match="PREFLIGHT_GOLDEN_PER_CLASS.*positive whole number"):
        resolve(OPTIONS["golden-per-class"], None, {"PREFLIGHT_GOLDEN_PER_CLASS": "0"})


def test_golden_per_class_from_the_environment_sizes_the_sample(pytester, world, monkeypatch):
    monkeypatch.setenv("PREFLIGHT_GOLDEN_PER_CLASS", "2")
    run = run_checks(pytester, "-m", "golden and clip", world=world)
    assert (zero_shot(run, "clip_b32")["n"], zero_shot(run, "clip_b32")["per_class"]) == (8, 2)
    # the allowed drop grows with the smaller sample: SE with the finite-population factor (3−2)/(3−1)
    assert zero_shot(run, "clip_b32")["allowed_drop"] == round(golden.allowed_drop(91.67, 8, 2, 3), 2)
