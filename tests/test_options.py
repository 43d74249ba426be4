"""Option precedence: command line > environment > ini > default, one pytester run per case."""

from __future__ import annotations

import json

import pytest

from preflight_core.options import OPTIONS, OptionError, resolve
from tests.checkrun import CHECKS, PROJECT, clean_environment


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    clean_environment(monkeypatch)


@pytest.mark.parametrize(
    ("cli", "env", "ini", "expected", "source"),
    [
        (None, None, None, "data/raw", "default"),
        (None, None, "/ini", "/ini", "ini key preflight_data_root"),
        (None, "/env", "/ini", "/env", "environment variable PREFLIGHT_DATA_ROOT"),
        ("/cli", "/env", "/ini", "/cli", "command line --data-root"),
        ("/cli", None, None, "/cli", "command line --data-root"),
    ],
    ids=["default", "ini", "env-over-ini", "cli-over-all", "cli-only"],
)
def test_data_root_precedence(pytester, monkeypatch, cli, env, ini, expected, source):
    args = [str(CHECKS), "--collect-only", "-p", "no:cacheprovider", "-m", "imagenet"]
    if cli:
        args.append(f"--data-root={cli}")
    if env:
        monkeypatch.setenv("PREFLIGHT_DATA_ROOT", env)
    if ini:
        args += ["-o", f"preflight_data_root={ini}"]
    result = pytester.runpytest_inprocess(*args)
    shown = str(PROJECT / expected) if expected == "data/raw" else expected
    result.stdout.fnmatch_lines([f"preflight: data root {shown} ({source}*"])


@pytest.mark.parametrize(
    ("where", "source"),
    [("cli", "command line --device"), ("env", "environment variable PREFLIGHT_DEVICE"),
     ("ini", "ini key preflight_device")],
)
def test_invalid_value_names_its_source(pytester, monkeypatch, where, source):
    args = [str(CHECKS), "--collect-only", "-p", "no:cacheprovider"]
    if where == "cli":
        args.append("--device=gpu0")
    elif where == "env":
        monkeypatch.setenv("PREFLIGHT_DEVICE", "gpu0")
    else:
        args += ["-o", "preflight_device=gpu0"]
    result = pytester.runpytest_inprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*invalid value 'gpu0' for --device (from {source}*): expected cuda, cuda:N or cpu*"])


def test_tiny_defaults_to_cpu_but_explicit_device_wins(pytester, tmp_path):
    from checks.tiny import build_tiny_world

    build_tiny_world(tmp_path / "w", models=False)
    args = [str(CHECKS), "--collect-only", "-p", "no:cacheprovider", "-m", "env", f"--tiny-world={tmp_path / 'w'}"]
    pytester.runpytest_inprocess(*args).stdout.fnmatch_lines(["*device cpu (--tiny)*"])
    result = pytester.runpytest_inprocess(*args, "--device=cuda:1")
    result.stdout.fnmatch_lines(["*device cuda:1 (command line --device)*"])


def test_tiny_world_that_does_not_exist_is_a_usage_error(pytester, tmp_path):
    result = pytester.runpytest_inprocess(str(CHECKS), "--collect-only", "-p", "no:cacheprovider",
                                          f"--tiny-world={tmp_path / 'nothing'}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*no tiny world in*nothing*"])


@pytest.mark.parametrize(("raw", "value"), [("1", True), ("yes", True), ("off", False), ("0", False)])
def test_boolean_env_values(raw, value):
    assert resolve(OPTIONS["deep"], None, {"PREFLIGHT_DEEP": raw}).value is value


def test_boolean_env_rejects_nonsense():
    with pytest.raises(OptionError, match=r"invalid value 'sometimes' for --deep \(from environment variable"):
        resolve(OPTIONS["deep"], None, {"PREFLIGHT_DEEP": "sometimes"})


def test_coco_source_choices():
    assert resolve(OPTIONS["coco-source"], None, {}, "official").value == "official"
    with pytest.raises(OptionError, match="expected one of kaggle, official"):
        resolve(OPTIONS["coco-source"], "torrent", {})


def test_report_json_shape(pytester, tmp_path):
    from checks.tiny import build_tiny_world

    world = build_tiny_world(tmp_path / "w", models=False)
    (world.data_root / "imagenet_meta" / "wnid_to_label.json").unlink()
    out = tmp_path / "r.json"
    pytester.runpytest_inprocess(str(CHECKS), "-p", "no:cacheprovider", "-m", "imagenet",
                                 f"--tiny-world={tmp_path / 'w'}", f"--report-json={out}")
    report = json.loads(out.read_text())
    # The contract of README "The JSON report" and docs/design.md.
    assert {"ok", "complete", "selection", "narrowed_by", "not_checked", "problems", "assets"} <= set(report)
    assert report["ok"] is False and report["selection"] == "-m 'imagenet'"
    assert report["complete"] is True and report["narrowed_by"] == [] and report["problems"] == []
    meta = next(a for a in report["assets"] if a["name"] == "imagenet_meta")
    assert {"name", "status", "required", "path", "problems", "fix", "fix_commands", "bytes"} <= set(meta)
    assert meta["status"] == "broken" and meta["required"] is True
    assert any("wnid_to_label.json" in p for p in meta["problems"])
    assert meta["fix"] == "python -m fetchers --imagenet-map"
    assert meta["fix_commands"] == ["python -m fetchers --imagenet-map"]
    assert isinstance(meta["bytes"], int) and meta["bytes"] > 0


def test_every_registry_marker_is_registered_by_the_plugin(pytester):
    from preflight_core.registry import all_markers

    result = pytester.runpytest_inprocess(str(CHECKS), "--markers", "-p", "no:cacheprovider")
    listed = {line.split(":")[0].removeprefix("@pytest.mark.").split("(")[0] for line in result.outlines
              if line.startswith("@pytest.mark.")}
    assert set(all_markers()) <= listed
    assert "markers" not in (PROJECT / "pytest.ini").read_text().split("#")[0], "pytest.ini restates the markers"


def test_unregistered_marker_is_a_usage_error(pytester):
    result = pytester.runpytest_inprocess(str(CHECKS), "--collect-only", "-p", "no:cacheprovider", "-m", "phase9")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
