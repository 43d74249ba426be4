"""fetchers.kaggle with the real kagglehub/kagglesdk against the fake Kaggle API of tests/fakes/kaggle_server.py.

HOME, KAGGLE_CONFIG_DIR and KAGGLEHUB_CACHE point into tmp_path (kagglehub reads them per call;
``~/.kaggle/kaggle.json``'s default was fixed at import, hence KAGGLE_CONFIG_DIR), and
PREFLIGHT_KAGGLE_ENDPOINT points the API calls at the fake.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import shlex
import subprocess
import traceback
import warnings
from pathlib import Path

import pytest

from fetchers.download import ExistingFileDiffers
from fetchers.kaggle import KaggleCredentialsWarning, KaggleFetchError, fetch_coco_kaggle
from preflight_core.registry import COCO_KAGGLE_PATH
from tests.conftest import COCO_VAL as VAL
from tests.conftest import KAGGLE_USER as USER
from tests.fakes.kaggle_server import FakeKaggle

SECRET = "KGAT_c0ffee_TESTKEY_never_print_9f8e7d"  # recognizable: must never appear in any output




def kaggle_json(key: str = SECRET, mode: int = 0o600) -> Path:
    path = Path(os.environ["KAGGLE_CONFIG_DIR"]) / "kaggle.json"
    path.write_text(f'{{"username": "{USER}", "key": "{key}"}}')
    path.chmod(mode)
    return path


def cache_folder(tmp_path: Path) -> Path:
    return tmp_path / "kagglehub" / "datasets" / "awsaf49" / "coco-2017-dataset" / "versions" / "2" / COCO_KAGGLE_PATH


def test_val2017_is_fetched_once_and_linked(kaggle: FakeKaggle, tmp_path: Path) -> None:
    kaggle.add_user(USER, SECRET)
    kaggle_json()
    data_root = tmp_path / "data" / "raw"

    with warnings.catch_warnings():
        warnings.simplefilter("error", KaggleCredentialsWarning)  # mode 600: no warning
        result = fetch_coco_kaggle(data_root)

    link = data_root / "coco_val2017"
    assert result.path == link and link.is_symlink() and not result.already_present
    assert Path(os.readlink(link)) == cache_folder(tmp_path).resolve()
    assert sorted(p.name for p in link.iterdir()) == sorted(Path(p).name for p in VAL)
    for path, data in VAL.items():
        assert (link / Path(path).name).read_bytes() == data
        assert len(kaggle.storage_gets(path)) == 1, path
    assert not any("train2017" in r.path or "annotations" in str(r.body) for r in kaggle.log)
    assert len(kaggle.api_calls("ListTreeDatasetFiles")) == 3  # 5 files, pages of 2
    assert {r.auth for r in kaggle.api_calls()} == {f"basic:{USER}"}
    assert {r.auth for r in kaggle.storage_gets()} == {None}  # credentials not sent to the storage host
    assert result.bytes_downloaded == sum(map(len, VAL.values()))

    kaggle.clear_log()
    again = fetch_coco_kaggle(data_root)
    assert again.already_present and again.path == link and kaggle.log == []


def test_access_token_from_the_environment(kaggle: FakeKaggle, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    kaggle.add_token(SECRET)
    monkeypatch.setenv("KAGGLE_API_TOKEN", SECRET)
    fetch_coco_kaggle(tmp_path / "data")
    assert {r.auth for r in kaggle.api_calls()} == {"bearer"}


def assert_secret_absent(texts: list[str]) -> None:
    basic = base64.b64encode(f"{USER}:{SECRET}".encode()).decode()
    for text in texts:
        assert SECRET not in text and basic not in text


@pytest.mark.parametrize("source", ["kaggle.json", "env key", "env token"])
def test_rejected_credentials_are_explained_and_never_printed(
        kaggle: FakeKaggle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture, source: str) -> None:
    kaggle.add_user(USER, "the-right-key")
    if source == "kaggle.json":
        where = str(kaggle_json())
    elif source == "env key":
        monkeypatch.setenv("KAGGLE_USERNAME", USER)
        monkeypatch.setenv("KAGGLE_KEY", SECRET)
        where = "KAGGLE_USERNAME/KAGGLE_KEY"
    else:
        monkeypatch.setenv("KAGGLE_API_TOKEN", SECRET)
        where = "KAGGLE_API_TOKEN"
    caplog.set_level(logging.DEBUG)

    with pytest.raises(KaggleFetchError) as e:
        fetch_coco_kaggle(tmp_path / "data")

    message = str(e.value)
    assert "HTTP 401" in message and where in message and "kaggle.com/settings" in message
    assert {r.auth for r in kaggle.api_calls()} == {"invalid"} and not kaggle.storage_gets()  # sent, refused
    out, err = capfd.readouterr()
    assert_secret_absent([message, repr(e.value), "".join(traceback.format_exception(e.value)), out, err,
                          caplog.text])
    assert not (tmp_path / "data" / "coco_val2017").exists()


def test_no_credentials_says_how_to_create_them(kaggle: FakeKaggle, tmp_path: Path) -> None:
    with pytest.raises(KaggleFetchError) as e:
        fetch_coco_kaggle(tmp_path / "data")
    message = str(e.value)
    assert "no Kaggle credentials were found" in message and "kaggle.json" in message and "chmod 600" in message
    assert {r.auth for r in kaggle.api_calls()} == {None}


def test_rules_not_accepted_403(kaggle: FakeKaggle, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    kaggle.add_user(USER, SECRET)
    kaggle.forbid(USER)
    kaggle_json()
    with pytest.raises(KaggleFetchError) as e:
        fetch_coco_kaggle(tmp_path / "data")
    message = str(e.value)
    assert "HTTP 403" in message and "accept the dataset's rules" in message
    assert "datasets/awsaf49/coco-2017-dataset" in message
    assert_secret_absent([message, "".join(traceback.format_exception(e.value)), *capfd.readouterr()])


def test_kaggle_json_readable_by_others_warns(kaggle: FakeKaggle, tmp_path: Path) -> None:
    kaggle.add_user(USER, SECRET)
    path = kaggle_json(mode=0o644)
    with pytest.warns(KaggleCredentialsWarning, match=r"chmod 600") as record:
        fetch_coco_kaggle(tmp_path / "data")
    assert str(path) in str(record[0].message)
    assert_secret_absent([str(w.message) for w in record])


@pytest.mark.parametrize("occupant", ["folder", "symlink elsewhere"])
def test_an_existing_different_coco_val2017_is_left_alone(kaggle: FakeKaggle, tmp_path: Path,
                                                          occupant: str) -> None:
    kaggle.add_user(USER, SECRET)
    kaggle_json()
    link = tmp_path / "data" / "coco_val2017"
    if occupant == "folder":
        link.mkdir(parents=True)
        (link / "000000000139.jpg").write_bytes(b"mine")
    else:
        (tmp_path / "mine").mkdir()
        link.parent.mkdir(parents=True)
        link.symlink_to(tmp_path / "mine")

    with pytest.raises(ExistingFileDiffers, match="left untouched and nothing was downloaded"):
        fetch_coco_kaggle(tmp_path / "data")

    assert kaggle.log == []
    if occupant == "folder":
        assert (link / "000000000139.jpg").read_bytes() == b"mine"
    else:
        assert Path(os.readlink(link)) == tmp_path / "mine"


def test_corrupted_file_is_reported_and_the_rerun_fetches_only_it(kaggle: FakeKaggle, tmp_path: Path) -> None:
    kaggle.add_user(USER, SECRET)
    kaggle_json()
    bad = sorted(VAL)[2]
    kaggle.corrupt(bad)

    with pytest.raises(KaggleFetchError, match="MD5"):
        fetch_coco_kaggle(tmp_path / "data")

    kaggle.heal()
    kaggle.clear_log()
    result = fetch_coco_kaggle(tmp_path / "data")
    assert (result.path / Path(bad).name).read_bytes() == VAL[bad]
    assert [r.path.split("/")[-1] for r in kaggle.storage_gets()] == [Path(bad).name]


def test_a_file_where_the_val2017_folder_should_be_is_refused_on_download_and_on_cache_hit(
        kaggle: FakeKaggle, tmp_path: Path) -> None:
    from preflight_core.registry import COCO_KAGGLE_HANDLE

    kaggle.add_user(USER, SECRET)
    kaggle_json()
    kaggle.add_dataset(COCO_KAGGLE_HANDLE, {COCO_KAGGLE_PATH: b"PK\x03\x04 an archive, not a folder"})
    data_root = tmp_path / "data"
    link = data_root / "coco_val2017"

    with pytest.raises(KaggleFetchError, match=r"kagglehub returned a file at .*where the folder coco2017/val2017"):
        fetch_coco_kaggle(data_root)
    assert cache_folder(tmp_path).is_file()  # kagglehub saved it and marked it complete
    assert not link.exists() and not link.is_symlink()

    kaggle.clear_log()
    with pytest.raises(KaggleFetchError) as e:  # the second run finds it in kagglehub's cache
        fetch_coco_kaggle(data_root)
    assert kaggle.log == []
    assert f"kagglehub's cache holds a file at {cache_folder(tmp_path)}" in e.value.message
    assert not link.exists() and not link.is_symlink()  # not linked to a file

    # The printed fix, run as printed, repairs it once Kaggle serves the folder.
    remove = re.search(r"\((rm -rf [^)]+)\)", e.value.fix.text).group(1)
    subprocess.run(shlex.split(remove), check=True)
    kaggle.add_dataset(COCO_KAGGLE_HANDLE, {**VAL})
    result = fetch_coco_kaggle(data_root)
    assert link.is_symlink() and sorted(p.name for p in link.iterdir()) == sorted(Path(p).name for p in VAL)
    assert not result.already_present


def test_an_empty_cached_folder_is_not_linked(kaggle: FakeKaggle, tmp_path: Path) -> None:
    kaggle.add_user(USER, SECRET)
    kaggle_json()
    fetch_coco_kaggle(tmp_path / "data")
    (tmp_path / "data" / "coco_val2017").unlink()
    for f in cache_folder(tmp_path).iterdir():
        f.unlink()  # kagglehub's marker says complete; the folder says otherwise
    with pytest.raises(KaggleFetchError, match="kagglehub's cache holds an empty folder"):
        fetch_coco_kaggle(tmp_path / "data")
    assert not (tmp_path / "data" / "coco_val2017").is_symlink()


def test_one_mirror_variable_covers_kaggle_too(kaggle: FakeKaggle, tmp_path: Path, monkeypatch) -> None:
    """Issue 15.6: an air-gapped site sets PREFLIGHT_MIRROR alone; the Kaggle API goes to $MIRROR/api.kaggle.com."""
    monkeypatch.delenv("PREFLIGHT_KAGGLE_ENDPOINT")
    monkeypatch.setenv("PREFLIGHT_MIRROR", kaggle.url)
    kaggle.add_user(USER, SECRET)
    kaggle_json()
    result = fetch_coco_kaggle(tmp_path / "data" / "raw")
    assert result.path.is_symlink() and not result.already_present
    assert kaggle.api_calls()  # reached only through the mirror: PREFLIGHT_KAGGLE_ENDPOINT is unset
