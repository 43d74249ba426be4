"""One model of the HF cache (issue 16) and hostile HF cache inputs (issue 17 items 3-5), through the real entry points.

- An edited cached config.json (valid JSON, other values) is found by a quick run, repaired by ``--fetch-missing``
  and by the printed fix alike, and the run names the file it replaced; with and without ``-n 2``.
- A refused fetch shows both digests in the row under ``-n 2``; fetch notes reach the JSON; a failed mechanical
  fetch fix has its ``fix_commands``.
- Fix commands are shell-quoted (a data root with a space or a newline) and the table escapes them.
- Hostile JSON in the cache and a huge ``refs/main`` are broken rows naming the file, in seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from checks.tiny import build_tiny_world
from checks.tiny_models import snapshot_dir
from preflight_core.hf_cache import cache_report, repo_dir
from preflight_core.registry import ASSETS, IMAGENET_META_FILES
from preflight_core.verify_cache import RACY_NS, VerifyCache
from tests.checkrun import PROJECT, clean_environment, run_checks
from tests.test_model_identity import cache_of, serve_tiny_repo

pytestmark = pytest.mark.torch  # builds or loads models: not in the light run at the floors

SIGLIP_B = ASSETS["siglip2_base"].location
QUICK = ("-m", "siglip2 and not model")
XDIST = pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["in-process", "xdist"])


def edit_config(world: Path) -> Path:
    """The cached config.json blob edited in place: valid JSON, same name, other values."""
    blob = (snapshot_dir(cache_of(world), SIGLIP_B) / "config.json").resolve()
    blob.write_bytes(blob.read_bytes().replace(b'"hidden_size": 32', b'"hidden_size": 31'))
    json.loads(blob.read_bytes())
    return blob


def row_of(run, name: str) -> dict:
    return next(a for a in run.report["assets"] if a["name"] == name)


# --------------------------------------------------------------------------- the edited config


@XDIST
def test_an_edited_config_is_found_by_a_quick_run(pytester, world, workers):
    edit_config(world)
    run = run_checks(pytester, *QUICK, *workers, world=world)
    row = row_of(run, "siglip2_base")
    assert row["status"] == "broken", run.result.stdout.str()
    assert any("config.json is broken (its content no longer matches its etag" in p for p in row["problems"]), row
    assert row["fix_commands"] == ["python -m fetchers --siglip2"]


@XDIST
def test_fetch_missing_repairs_an_edited_config_and_names_it(pytester, world, hub, workers):
    serve_tiny_repo(hub, world, SIGLIP_B)
    edit_config(world)
    run = run_checks(pytester, *QUICK, "--fetch-missing", *workers, world=world)
    row = row_of(run, "siglip2_base")
    assert row["status"] == "ready", run.result.stdout.str()
    assert len(hub.downloads(SIGLIP_B, "config.json")) == 1
    notes = row["fetched"]["notes"]
    assert any(n.startswith("replaced config.json in snapshot") for n in notes), row
    assert any("replaced config.json" in line for line in row["info"]), row
    assert "replaced config.json" in run.result.stdout.str()


def test_the_printed_fix_repairs_an_edited_config_and_names_it(pytester, world, hub, capsys):
    from checks.tiny import load_tiny_world
    from fetchers.hub import fetch_hf_model

    serve_tiny_repo(hub, world, SIGLIP_B)
    edit_config(world)
    row = row_of(run_checks(pytester, *QUICK, world=world), "siglip2_base")
    assert row["fix_commands"] == [ASSETS["siglip2_base"].fix.commands[-1]]
    # The printed command is `python -m fetchers --siglip2`: the same fetch, with the tiny world's pins.
    result = fetch_hf_model(load_tiny_world(world).facts_for("siglip2_base"), cache_dir=cache_of(world))
    assert any(n.startswith("replaced config.json") for n in result.notes)
    assert f"{SIGLIP_B}: replaced config.json" in capsys.readouterr().out
    again = run_checks(pytester, *QUICK, world=world)
    assert row_of(again, "siglip2_base")["status"] == "ready", again.result.stdout.str()


def test_small_files_are_hashed_once_then_vouched_for_by_the_verify_cache(world, tmp_path, monkeypatch):
    """A re-run costs a stat per file: no file is read once the verify cache holds its identity."""
    from checks.tiny import load_tiny_world
    from preflight_core import hf_cache

    facts = load_tiny_world(world).facts_for("siglip2_base")
    snap = snapshot_dir(cache_of(world), SIGLIP_B)
    old = time.time() - 60
    for link in snap.iterdir():
        os.utime(link.resolve(), (old, old))
    time.sleep(RACY_NS / 1e9 + 0.1)  # the verify cache trusts no identity younger than this (ctime included)
    verified = VerifyCache(tmp_path / "verified")
    assert cache_report(facts, cache_of(world), verified).complete
    hashed: list[str] = []
    real = hf_cache.blob_digest
    monkeypatch.setattr(hf_cache, "blob_digest", lambda blob: hashed.append(blob.name) or real(blob))
    assert cache_report(facts, cache_of(world), verified).complete and hashed == []
    edit_config(world)
    assert not cache_report(facts, cache_of(world), verified).complete and len(hashed) == 1


# --------------------------------------------------------------------------- fetch outcomes in the row


def test_a_refused_fetch_shows_both_digests_in_the_row_under_xdist(pytester, world, hub):
    from checks.tiny_models import etag_for

    snap = snapshot_dir(cache_of(world), SIGLIP_B)
    files = {p.name: p.read_bytes() for p in snap.iterdir()}
    published = etag_for("model.safetensors", files["model.safetensors"])
    other = bytearray(files["model.safetensors"])
    other[-1] ^= 0xFF
    hub.add_repo(SIGLIP_B, {**files, "model.safetensors": bytes(other)}, sha=snap.name)
    found = etag_for("model.safetensors", bytes(other))
    (snap / "model.safetensors").unlink()  # something to fetch
    run = run_checks(pytester, *QUICK, "--fetch-missing", "-n", "2", world=world)
    row = row_of(run, "siglip2_base")
    assert row["status"] == "broken" and not row["fetched"]["ok"], row
    text = "\n".join(row["problems"])
    assert "--fetch-missing tried:" in text and found[:16] in text and published[:16] in text, row


def test_a_failed_mechanical_fetch_fix_has_its_commands(pytester, tmp_path, monkeypatch, http_mirror):
    clean_environment(monkeypatch)
    monkeypatch.setenv("PREFLIGHT_MIRROR", http_mirror.url)
    world = build_tiny_world(tmp_path / "world")
    meta = world.data_root / "imagenet_meta"
    for remote in IMAGENET_META_FILES.values():
        http_mirror.serve_url(remote.urls[0], (meta / remote.filename).read_bytes())
    (meta / IMAGENET_META_FILES["val_synsets"].filename).unlink()  # something to fetch
    bad = meta / "wnid_to_label.json"
    bad.write_text("{not json")
    run = run_checks(pytester, "-m", "imagenet", "--fetch-missing", world=tmp_path / "world")
    row = row_of(run, "imagenet_meta")
    assert row["status"] != "ready" and not row["fetched"]["ok"], row
    assert row["fix_commands"][0] == f"mv {bad} {bad}.old", row
    assert row["fix_commands"][-1].startswith("python -m fetchers --imagenet-map"), row
    assert row["fetched"]["fix_commands"] == row["fix_commands"]


# --------------------------------------------------------------------------- issue 17 item 3: quoting


@pytest.mark.parametrize("name", ["my data", "new\nline"], ids=["space", "newline"])
def test_fix_commands_work_pasted_into_bash_whatever_the_data_root(pytester, tmp_path, monkeypatch, http_mirror,
                                                                    reference_imagenet, name):
    clean_environment(monkeypatch)
    monkeypatch.setenv("PREFLIGHT_MIRROR", http_mirror.url)
    for remote in IMAGENET_META_FILES.values():
        name_there = remote.urls[0].rsplit("/", 1)[-1] if "simple" in remote.filename else remote.filename
        http_mirror.serve_url(remote.urls[0], (reference_imagenet / name_there).read_bytes())
    root = tmp_path / name / "raw"
    root.mkdir(parents=True)
    run = run_checks(pytester, "-m", "imagenet", f"--data-root={root}")
    row = row_of(run, "imagenet_meta")
    assert row["status"] == "missing" and row["fix_commands"], row
    for command in row["fix_commands"]:
        done = subprocess.run(["bash", "-c", command], cwd=PROJECT, capture_output=True, text=True)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
    assert sorted(p.name for p in (root / "imagenet_meta").iterdir() if not p.name.startswith(".")) == sorted(
        [*(r.filename for r in IMAGENET_META_FILES.values()), "wnid_to_label.json"])
    table = run.result.stdout.str().split("preflight readiness", 1)[1]
    if "\n" in name:  # the table escapes it, as it does file names
        assert "new\\nline" in table and f"{tmp_path}/new\n" not in table


# --------------------------------------------------------------------------- issue 17 items 4 and 5


def nested(depth: int = 1_000_000) -> bytes:
    return b"[" * depth + b"]" * depth


def plant(world: Path, name: str, data: bytes) -> None:
    blob = (snapshot_dir(cache_of(world), SIGLIP_B) / name).resolve()
    blob.write_bytes(data)


def deep_safetensors() -> bytes:
    header = b'{"a":' + nested(200_000) + b"}"
    return len(header).to_bytes(8, "little") + header


@pytest.mark.parametrize("name, data", [
    ("config.json", nested()),
    ("preprocessor_config.json", nested()),
    ("config.json", b"\xff\xfe{\x00}"),
    ("model.safetensors", deep_safetensors()),
], ids=["config-nested", "preprocessor-nested", "config-not-utf8", "safetensors-header-nested"])
def test_hostile_json_in_the_cache_is_a_broken_row_naming_the_file(pytester, world, name, data):
    plant(world, name, data)
    t0 = time.monotonic()
    run = run_checks(pytester, *QUICK, world=world)
    seconds = time.monotonic() - t0
    row = row_of(run, "siglip2_base")
    out = run.result.stdout.str()
    assert row["status"] == "broken", out
    assert any(f"{name} is broken" in p for p in row["problems"]), row
    assert "bug in preflight" not in out and "RecursionError" not in out and "Traceback" not in out
    assert seconds < 30, seconds


@pytest.mark.parametrize("content", ["sparse-1GiB", "not-utf8"])
def test_a_hostile_refs_main_is_judged_without_reading_it_whole(pytester, world, content):
    ref = repo_dir(cache_of(world), SIGLIP_B) / "refs" / "main"
    if content == "sparse-1GiB":
        with open(ref, "r+b") as f:
            f.truncate(1 << 30)
    else:
        ref.write_bytes(b"\xff\xfe\x00\x1b[2J" + ref.read_bytes())
    t0 = time.monotonic()
    run = run_checks(pytester, *QUICK, world=world)
    seconds = time.monotonic() - t0
    row = row_of(run, "siglip2_base")
    out = run.result.stdout.str()
    assert row["status"] == "broken", out
    assert any("refs/main does not hold a commit hash" in p for p in row["problems"]), row
    assert "\x00" not in out and "\x1b" not in out and "\\u0000" not in json.dumps(run.report)
    assert "bug in preflight" not in out
    assert seconds < 30, seconds
