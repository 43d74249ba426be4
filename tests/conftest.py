"""Fixtures shared by the self-tests: fake servers on 127.0.0.1; pytester drives the checks."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `checks`, `fetchers` and `tests.fakes` import from the repository root
    sys.path.insert(0, str(REPO))

from preflight_core.registry import COCO_KAGGLE_HANDLE  # noqa: E402
from tests.fakes.http_server import FakeHTTPServer  # noqa: E402
from tests.fakes.hub_server import FakeHub  # noqa: E402
from tests.fakes.kaggle_server import FakeKaggle, coco_val2017_files  # noqa: E402
from tests.fakes.network import loopback_only  # noqa: E402

pytest_plugins = ["pytester"]  # only the self-tests need it; user runs never load it

KAGGLE_USER = "researcher"
COCO_VAL = coco_val2017_files()
COCO_OTHER = {"coco2017/train2017/000000000009.jpg": b"not needed",
              "coco2017/annotations/instances_val2017.json": b"{}"}

REFERENCE_IMAGENET = Path(__file__).resolve().parent / "data" / "imagenet"  # see its README: sources, hashes


@pytest.fixture(autouse=True)
def no_network() -> Iterator[list[str]]:
    """Every self-test: look-ups and connections outside loopback are refused, and fail the test."""
    with loopback_only() as refused:
        yield refused
    assert refused == [], f"traffic outside loopback was attempted: {refused}"


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tiny world with its models, in a clean environment (no PREFLIGHT_*, not offline).

    Test modules that need another world (no models, a tar) define their own ``world``, which wins.
    """
    from checks.tiny import build_tiny_world
    from tests.checkrun import clean_environment

    clean_environment(monkeypatch)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    build_tiny_world(tmp_path / "world")
    return tmp_path / "world"


@pytest.fixture(scope="session")
def http_server_session() -> Iterator[FakeHTTPServer]:
    with FakeHTTPServer() as server:
        yield server


@pytest.fixture
def http_mirror(http_server_session: FakeHTTPServer, monkeypatch: pytest.MonkeyPatch) -> FakeHTTPServer:
    """The session's fake HTTP server, emptied, with PREFLIGHT_MIRROR pointing at it."""
    server = http_server_session
    server.reset()
    server.files.clear()
    monkeypatch.setenv("PREFLIGHT_MIRROR", server.url)
    return server


@pytest.fixture(scope="session")
def reference_imagenet() -> Path:
    """Byte-exact copies of the public ImageNet metadata files, shipped with the self-tests."""
    return REFERENCE_IMAGENET


def pytest_configure(config: pytest.Config) -> None:
    """Warm every lazy import of the model stack once, before any in-process pytester run.

    pytester puts sys.modules back as it found it after each in-process run. torch's C extension
    cannot be imported twice, and transformers imports its model modules lazily: a module dropped
    and re-imported gives a second set of classes, and SiglipModel's weight init then fails its
    isinstance checks. Loading and running the tiny models here imports all of them up front.
    """
    import importlib.util
    import tempfile

    config.addinivalue_line("markers", "torch: needs torch (left out of the light run at the dependency floors)")
    if importlib.util.find_spec("torch") is None:  # the light environment at the floors (.ci/run)
        return
    from checks import models
    from checks.session import quiet_transformers_default_config
    from checks.tiny_models import write_tiny_models

    quiet_transformers_default_config()

    with tempfile.TemporaryDirectory(prefix="preflight-warmup-") as tmp:
        facts = write_tiny_models(Path(tmp) / "hub", Path(tmp) / "configs")
        for f in facts.values():
            models.forward_check(models.load_model(f, Path(tmp) / "hub", "cpu", Path(tmp) / "configs"), f)
        models.clear_loaded()


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    from huggingface_hub import constants

    with FakeHub() as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
        for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE"):
            monkeypatch.delenv(var, raising=False)
        # The import-time constants, as the env vars would have set them before the import:
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        # Telemetry off: otherwise the User-Agent code asks constants.ENDPOINT (huggingface.co) for its agent list.
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
        monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf" / "token"))  # not the developer's
        yield fake


@pytest.fixture
def kaggle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKaggle]:
    from kagglehub import config

    home = tmp_path / "home"
    (home / ".kaggle").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(home / ".kaggle"))
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub"))
    for var in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_API_ENVIRONMENT",
                "KAGGLE_KERNEL_RUN_TYPE", "KAGGLE_API_V1_TOKEN", "TBE_RUNTIME_ADDR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(config, "_kaggle_credentials", None)
    with FakeKaggle() as fake:
        fake.add_dataset(COCO_KAGGLE_HANDLE, {**COCO_VAL, **COCO_OTHER})
        monkeypatch.setenv("PREFLIGHT_KAGGLE_ENDPOINT", fake.url)
        yield fake
