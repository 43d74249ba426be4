"""Fixtures shared by the self-tests: fake servers on 127.0.0.1."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `checks`, `fetchers` and `tests.fakes` import from the repository root
    sys.path.insert(0, str(REPO))

from tests.fakes.http_server import FakeHTTPServer  # noqa: E402

REFERENCE_IMAGENET = REPO.parent / "shared" / "reference" / "imagenet"


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
    """Byte-exact copies of the public ImageNet metadata files (never copied into the repository)."""
    if not (REFERENCE_IMAGENET / "ILSVRC2012_val_synsets.txt").is_file():
        pytest.skip(f"reference ImageNet metadata not found in {REFERENCE_IMAGENET}")
    return REFERENCE_IMAGENET


def pytest_configure(config: pytest.Config) -> None:
    # pytester's in-process runs put sys.modules back as they found it; torch's C extension cannot be
    # imported a second time, so the heavy libraries are imported once, before any such run.
    import open_clip  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401
