"""The single source of truth: which assets exist, what each phase needs, the facts to check.

Markers, required-vs-optional, the fetch fixtures, the CLI and the readiness report all read
this module; nothing else restates the phase table or the facts (docs/design.md).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from preflight_core.commands import fetch_command
from preflight_core.findings import Fix, human_bytes

# Phases and the experiments that belong to them (phase2 is retrieval and has no exp markers).
PHASES: dict[str, tuple[str, ...]] = {
    "phase1": ("exp0", "exp0b", "exp4", "exp5"),
    "phase2": (),
    "phase3": ("exp6", "exp7", "exp8"),
}
EXPERIMENTS: tuple[str, ...] = tuple(e for exps in PHASES.values() for e in exps)
SELECTORS: tuple[str, ...] = tuple(PHASES) + EXPERIMENTS
FAMILIES: dict[str, str] = {
    "imagenet": "ImageNet val images and ImageNet metadata",
    "coco": "COCO val2017 images",
    "siglip2": "SigLIP2 models (transformers)",
    "clip": "CLIP models (open_clip, openai weights)",
    "gpu": "the CUDA device and forward passes on it",
    "model": "checks that import torch and load a model",
    "env": "Python and package versions",
}


@dataclass(frozen=True)
class ImageNetValFacts:
    n_classes: int = 1000
    per_class: int = 50
    n_images: int = 50_000
    extension: str = ".JPEG"
    # The face-blurred release drops a few images; ``max_missing`` ids may be absent.
    max_missing: int = 0
    variant: str = "official"
    # The golden check's class names (in sorted-wnid order) and prompt templates ("a photo of a {}.");
    # empty: the published ones that open_clip ships (zero_shot_metadata). The tiny world brings its own.
    golden_classnames: tuple[str, ...] = ()
    golden_templates: tuple[str, ...] = ()


IMAGENET_VAL_OFFICIAL = ImageNetValFacts()
IMAGENET_VAL_BLURRED = ImageNetValFacts(
    n_images=49_997, extension=".jpg", max_missing=3, variant="face-blurred"
)


@dataclass(frozen=True)
class RemoteFile:
    """A file downloaded over plain HTTPS and pinned by size and sha256."""

    filename: str
    urls: tuple[str, ...]
    size: int
    sha256: str


IMAGENET_META_FILES: dict[str, RemoteFile] = {
    "class_index": RemoteFile(
        "imagenet_class_index.json",
        (
            "https://storage.googleapis.com/download.tensorflow.org/data/imagenet_class_index.json",
            "https://s3.amazonaws.com/deep-learning-models/image-models/imagenet_class_index.json",
        ),
        35_363,
        "a1e7a966a1f601d39e4b43e119b3e7dd4a2ad3ea08cf69847cbaf021013767bc",
    ),
    "simple_labels": RemoteFile(
        "imagenet_simple_labels.json",
        (
            "https://raw.githubusercontent.com/anishathalye/imagenet-simple-labels/master/"
            "imagenet-simple-labels.json",
        ),
        14_209,
        "987705581d9446328498f950454a1cc7d8dfc578a8243d8bfdcd2588a6905aae",
    ),
    "val_synsets": RemoteFile(
        "ILSVRC2012_val_synsets.txt",
        (
            "https://raw.githubusercontent.com/tensorflow/models/master/research/slim/datasets/"
            "imagenet_2012_validation_synset_labels.txt",
        ),
        500_000,
        "313fc3f23c864dde9183c9a368809065765dd1b657a6904fded44e3e46d34604",
    ),
}
WNID_TO_LABEL_FILENAME = "wnid_to_label.json"  # derived locally from the class index
CLASS_INDEX = IMAGENET_META_FILES["class_index"].filename
SIMPLE_LABELS = IMAGENET_META_FILES["simple_labels"].filename
VAL_SYNSETS = IMAGENET_META_FILES["val_synsets"].filename
META_FILENAMES = (CLASS_INDEX, SIMPLE_LABELS, VAL_SYNSETS, WNID_TO_LABEL_FILENAME)


@dataclass(frozen=True)
class ImageNetMetaFacts:
    n_classes: int = 1000
    n_val_images: int = 50_000
    per_class: int = 50
    # name -> (size, sha256) of the pinned upstream files; empty mapping = no pin.
    pins: dict[str, tuple[int, str]] = field(
        default_factory=lambda: {f.filename: (f.size, f.sha256) for f in IMAGENET_META_FILES.values()}
    )
    # Labels that appear twice in the class index on purpose.
    known_duplicate_labels: frozenset[str] = frozenset({"crane", "maillot"})


IMAGENET_VAL_BLURRED_TAR_NAME = "val_blurred.tar.gz"  # the face-blurred release, already in class folders
DOWNLOADS = "downloads"  # <data root>/downloads: archives a person downloaded, and archives fetching kept
IMAGENET_VAL_TAR = RemoteFile(
    "ILSVRC2012_img_val.tar",
    ("https://image-net.org/data/ILSVRC/2012/ILSVRC2012_img_val.tar",),
    6_744_924_160,
    "c7e06a6c0baccf06d8dbeb6577d71efff84673a5dbdd50633ab44f8ea0456ae0",
)


@dataclass(frozen=True)
class CocoFacts:
    n_images: int = 5_000
    digits: int = 12


IMAGENET_TAR_NAMES = (IMAGENET_VAL_TAR.filename, IMAGENET_VAL_BLURRED_TAR_NAME)

COCO_VAL_ZIP = RemoteFile(
    "val2017.zip",
    ("http://images.cocodataset.org/zips/val2017.zip",),
    815_585_330,
    "4f7e2ccb2866ec5041993c9cf2a952bbed69647b115d0f74da7ce8f4bef82f05",
)
COCO_KAGGLE_HANDLE = "awsaf49/coco-2017-dataset/versions/2"
COCO_KAGGLE_PATH = "coco2017/val2017"


class Library(enum.StrEnum):
    """The library that loads a model (one adapter each: ``preflight_core.model_libraries``)."""

    TRANSFORMERS = "transformers"
    OPEN_CLIP = "open_clip"


class AssetKind(enum.StrEnum):
    DATA = "data"  # a folder under the data root
    MODEL = "model"  # a repo in the Hugging Face cache
    DEVICE = "device"
    ENVIRONMENT = "environment"


@dataclass(frozen=True)
class ModelFacts:
    library: Library
    repo_id: str  # Hugging Face repo holding the weights
    embed_dim: int
    image_size: int
    context_length: int
    # Files the model needs in its snapshot. A tuple inside the tuple = "one of these".
    files: tuple[str | tuple[str, ...], ...]
    open_clip_name: str | None = None  # the -quickgelu architecture name
    approx_weight_bytes: int = 0
    # The published weights (docs/design.md, "Facts"): the revision they were pinned at, and the weight file's
    # name, size and sha256. The Hub names an LFS blob in the cache by exactly this sha256.
    revision: str = ""
    weights_file: str = ""
    weights_size: int = 0
    weights_sha256: str = ""
    # The golden check (docs/design.md): the published ImageNet-1k zero-shot top-1 (percent) and where it is
    # published; the token ids of one canonical prompt through the recipe's tokenisation (empty: no pin).
    zero_shot_top1: float = 0.0
    zero_shot_source: str = ""
    token_pin_prompt: str = ""
    token_pin_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "library", Library(self.library))  # also from a world's JSON
        if not self.approx_weight_bytes and self.weights_size:  # the pinned file is the estimate
            object.__setattr__(self, "approx_weight_bytes", self.weights_size)


OPEN_CLIP_RESULTS = "open_clip results table (docs/openclip_results.csv)"
SIGLIP2_PAPER = "SigLIP 2 paper, Table 1 (big_vision README_siglip2)"
# "a photo of a tench." through open_clip's SimpleTokenizer: <start_of_text> … <end_of_text>, zero-padded to 77.
CLIP_TOKEN_PIN = ("a photo of a tench.", (49406, 320, 1125, 539, 320, 1149, 634, 269, 49407))
# SigLIP 2: the structure is pinned (no BOS, EOS last, 64 long: google/siglip2-* tokenizer_config.json has
# add_bos_token false, add_eos_token true); the Gemma ids are not recorded yet (no copy of the tokenizer here).
SIGLIP2_TOKEN_PIN = ("a photo of a tench.", ())
SIGLIP2_FILES: tuple[str | tuple[str, ...], ...] = (
    "config.json",
    "model.safetensors",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
)
OPEN_CLIP_FILES: tuple[str | tuple[str, ...], ...] = (
    ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"),
)


@dataclass(frozen=True)
class Asset:
    name: str
    title: str
    family: str
    kind: AssetKind
    location: str  # folder under the data root, or a Hugging Face repo id
    required_in: frozenset[str]
    optional_in: frozenset[str] = frozenset()
    fix: Fix = Fix()
    fetch_flag: str | None = None  # the `python -m fetchers` flag that fetches it
    fetch_input: str | None = None  # the option whose value that flag takes (the ImageNet val tar)
    fetch_note: str = ""  # what the flag's help adds to the title
    fetch_needs_free_slot: bool = False  # the fetch puts a link (or a new folder) where it goes: an empty one is in the way
    fetch_fills_in: tuple[str, ...] = ()  # the files a fetch completes in place (others never touch a folder that is there)
    approx_bytes: int = 0  # what a fetch downloads (a model: its weight file)
    facts: object = None

    @property
    def size_hint(self) -> str:
        return human_bytes(self.approx_bytes) if self.approx_bytes else "size unknown"

    @property
    def selectors(self) -> frozenset[str]:
        return self.required_in | self.optional_in

    @property
    def markers(self) -> tuple[str, ...]:
        return tuple(sorted(self.selectors)) + (self.family,)

    @property
    def check_markers(self) -> tuple[str, ...]:
        """Markers that some of this asset's checks add on top of ``markers``."""
        return {"data": ("deep",), "model": ("model", "gpu", "deep", "golden"),
                "environment": ("model",)}.get(self.kind, ())


def _with_experiments(*phases: str) -> frozenset[str]:
    return frozenset(phases) | frozenset(e for p in phases for e in PHASES[p])


ALL_PHASES = _with_experiments(*PHASES)
FETCH = "python -m fetchers"


def _model(name: str, title: str, family: str, facts: ModelFacts, required_in: frozenset[str],
           optional_in: frozenset[str] = frozenset()) -> Asset:
    """A model asset: it lives in the Hugging Face cache under its repo id; ``--<family>`` fetches it."""
    return Asset(name, title, family, AssetKind.MODEL, facts.repo_id, required_in=required_in,
                 optional_in=optional_in, fix=Fix.run(fetch_command(f"--{family}")), fetch_flag=f"--{family}",
                 approx_bytes=facts.weights_size or facts.approx_weight_bytes, facts=facts)

ASSETS: dict[str, Asset] = {
    a.name: a
    for a in (
        Asset(
            "imagenet_val",
            "ImageNet val (50,000 images in 1000 class folders)",
            "imagenet",
            AssetKind.DATA,
            "imagenet_val",
            required_in=ALL_PHASES,
            fix=Fix.after(f"download ILSVRC2012_img_val.tar ({IMAGENET_VAL_TAR.size / 2**30:.1f} GiB) from "
                          "https://image-net.org (account needed), then run",
                          f"{FETCH} --reorganize-imagenet /path/to/ILSVRC2012_img_val.tar"),
            fetch_flag="--reorganize-imagenet",
            fetch_input="imagenet-tar",
            fetch_note="reorganizes a downloaded ILSVRC2012_img_val.tar (or val_blurred.tar.gz) into class folders",
            approx_bytes=IMAGENET_VAL_TAR.size,
            facts=IMAGENET_VAL_OFFICIAL,
        ),
        Asset(
            "imagenet_meta",
            "ImageNet metadata (class index, simple labels, val synsets)",
            "imagenet",
            AssetKind.DATA,
            "imagenet_meta",
            required_in=ALL_PHASES,
            fix=Fix.run(fetch_command("--imagenet-map")),
            fetch_flag="--imagenet-map",
            fetch_fills_in=META_FILENAMES,
            approx_bytes=sum(f.size for f in IMAGENET_META_FILES.values()),
            facts=ImageNetMetaFacts(),
        ),
        Asset(
            "coco_val2017",
            "COCO val2017 (5,000 images)",
            "coco",
            AssetKind.DATA,
            "coco_val2017",
            required_in=frozenset(),
            optional_in=_with_experiments("phase2", "phase3"),
            fix=Fix.run(fetch_command("--coco")),
            fetch_flag="--coco",
            fetch_note="Kaggle by default, see --coco-source",
            fetch_needs_free_slot=True,
            approx_bytes=COCO_VAL_ZIP.size,
            facts=CocoFacts(),
        ),
        _model("siglip2_base", "SigLIP2 base-patch16-224", "siglip2",
               ModelFacts(Library.TRANSFORMERS, "google/siglip2-base-patch16-224", 768, 224, 64, SIGLIP2_FILES,
                          revision="75de2d55ec2d0b4efc50b3e9ad70dba96a7b2fa2",
                          weights_file="model.safetensors", weights_size=1_500_800_904,
                          weights_sha256="612923381c76ec5a9bed335d1c48827e3f2e506ac31b044b63b2031fadee6a0b",
                          zero_shot_top1=78.2, zero_shot_source=SIGLIP2_PAPER,
                          token_pin_prompt=SIGLIP2_TOKEN_PIN[0], token_pin_ids=SIGLIP2_TOKEN_PIN[1]),
               required_in=frozenset({"phase1", "exp4"}), optional_in=_with_experiments("phase2", "phase3")),
        _model("siglip2_so400m", "SigLIP2 so400m-patch14-384", "siglip2",
               ModelFacts(Library.TRANSFORMERS, "google/siglip2-so400m-patch14-384", 1152, 384, 64, SIGLIP2_FILES,
                          revision="e8e487298228002f3d8a82e0cd5c8ea9c567f57f",
                          weights_file="model.safetensors", weights_size=4_544_143_072,
                          weights_sha256="9f4f4a49f908ef0c979bce8ff5a5c0e88882dc6c5dc4304387cbbd152558e2c2",
                          zero_shot_top1=84.1, zero_shot_source=SIGLIP2_PAPER,
                          token_pin_prompt=SIGLIP2_TOKEN_PIN[0], token_pin_ids=SIGLIP2_TOKEN_PIN[1]),
               required_in=frozenset({"phase1", "exp4"}), optional_in=_with_experiments("phase2", "phase3")),
        _model("clip_b32", "CLIP ViT-B/32 (open_clip, openai)", "clip",
               ModelFacts(Library.OPEN_CLIP, "timm/vit_base_patch32_clip_224.openai", 512, 224, 77, OPEN_CLIP_FILES,
                          open_clip_name="ViT-B-32-quickgelu",
                          revision="a6f597a30f7b82c51704746581f9a4e41421e878",
                          weights_file="open_clip_model.safetensors", weights_size=605_143_284,
                          weights_sha256="e6d1bd7789aa45192b3bf90570a789b478bae1b74ebcce7eddd908e83a2b7c31",
                          zero_shot_top1=63.3, zero_shot_source=f"{OPEN_CLIP_RESULTS}: 63.32; CLIP paper 63.2",
                          token_pin_prompt=CLIP_TOKEN_PIN[0], token_pin_ids=CLIP_TOKEN_PIN[1]),
               required_in=ALL_PHASES),
        _model("clip_l14", "CLIP ViT-L/14 (open_clip, openai)", "clip",
               ModelFacts(Library.OPEN_CLIP, "timm/vit_large_patch14_clip_224.openai", 768, 224, 77, OPEN_CLIP_FILES,
                          open_clip_name="ViT-L-14-quickgelu",
                          revision="18d0535469bb561bf468d76c1d73aa35156c922b",
                          weights_file="open_clip_model.safetensors", weights_size=1_710_517_724,
                          weights_sha256="9ce2e8a8ebfff3793d7d375ad6d3c35cb9aebf3de7ace0fc7308accab7cd207e",
                          zero_shot_top1=75.5, zero_shot_source=f"{OPEN_CLIP_RESULTS}: 75.54; CLIP paper 75.3",
                          token_pin_prompt=CLIP_TOKEN_PIN[0], token_pin_ids=CLIP_TOKEN_PIN[1]),
               required_in=ALL_PHASES),
        Asset(
            "gpu",
            "CUDA GPU (kernel runs, memory, bf16)",
            "gpu",
            AssetKind.DEVICE,
            "cuda",
            required_in=ALL_PHASES,
            fix=Fix("install a CUDA build of torch that matches the driver (nvidia-smi), "
                    "or run on a GPU node; `--device cpu` skips GPU checks"),
        ),
        Asset(
            "python_env",
            "Python packages (torch, transformers, open_clip)",
            "env",
            AssetKind.ENVIRONMENT,
            "python",
            required_in=ALL_PHASES,
            fix=Fix.run("pip install -r requirements.txt"),
        ),
    )
}


def all_markers() -> dict[str, str]:
    """Every marker preflight uses, with its description (pytest.ini must register each)."""
    markers = {p: f"everything {p} needs ({', '.join(e) or 'retrieval'})" for p, e in PHASES.items()}
    markers.update({e: f"everything experiment {e} needs" for e in EXPERIMENTS})
    markers.update(FAMILIES)
    markers["asset"] = "asset(name): the registry asset a check belongs to"
    markers["deep"] = "slow checks that run only with --deep"
    markers["golden"] = "the golden check: zero-shot top-1 on a sample of ImageNet val against the published number"
    return markers
