"""The verdict is exactly true: what ran, what it proves, what fixes it (issue 7's cases, one test each)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from checks.tiny import build_tiny_world
from tests.checkrun import CHECKS, PROJECT, clean_environment, run_checks


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    clean_environment(monkeypatch)
    build_tiny_world(tmp_path / "world", models=False)
    return tmp_path / "world"


@pytest.fixture
def model_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    clean_environment(monkeypatch)
    build_tiny_world(tmp_path / "world")
    return tmp_path / "world"


def meta(world: Path) -> Path:
    return world / "data" / "raw" / "imagenet_meta"


def verdict(run) -> str:
    return run.report["verdict"]


def last_line_of_table(run) -> str:
    lines = run.result.stdout.lines
    return next(line for line in reversed(lines) if line.startswith(("READY", "NOT READY")))


# --------------------------------------------------------------------------- what ran


def run_with_cache(pytester, world: Path, *args: str) -> tuple[pytest.RunResult, dict]:
    out = pytester.path / f"r{len(list(pytester.path.glob('r*.json')))}.json"
    result = pytester.runpytest_inprocess(str(CHECKS), f"--tiny-world={world}", f"--report-json={out}", *args)
    return result, json.loads(out.read_text())


def test_last_failed_rerun_is_a_verdict_on_what_ran_only(pytester, world):
    wnid_to_label = meta(world) / "wnid_to_label.json"
    saved = wnid_to_label.read_bytes()
    wnid_to_label.unlink()
    first, report = run_with_cache(pytester, world, "-m", "imagenet")
    assert first.ret == 1 and report["complete"] is True
    wnid_to_label.write_bytes(saved)
    again, report = run_with_cache(pytester, world, "-m", "imagenet", "--lf")
    assert report["ok"] is True and report["complete"] is False and report["narrowed_by"] == ["--lf"]
    assert "narrowed by --lf" in report["verdict"] and "not a verdict on -m 'imagenet'" in report["verdict"]
    assert not report["verdict"].startswith("READY for -m")


@pytest.mark.parametrize("args, named", [
    (("-k", "present"), "-k 'present'"),
    (("--deselect", "checks/test_imagenet_meta.py::test_val_synsets"), "--deselect"),
])
def test_narrowed_runs_say_by_what(pytester, world, args, named):
    run = run_checks(pytester, "-m", "imagenet", *args, world=world)
    assert run.ret == 0
    assert run.report["complete"] is False and named in run.report["narrowed_by"]
    assert verdict(run).startswith("READY for the ") and f"narrowed by {named}" in verdict(run)


def test_a_file_argument_narrows_the_run(pytester, world):
    out = pytester.path / "r.json"
    result = pytester.runpytest_inprocess(str(CHECKS / "test_imagenet_meta.py"), f"--tiny-world={world}",
                                          f"--report-json={out}", "-p", "no:cacheprovider")
    report = json.loads(out.read_text())
    assert result.ret == 0 and report["complete"] is False
    assert any("test_imagenet_meta.py" in n for n in report["narrowed_by"])
    assert "not a verdict on all phases" in report["verdict"]


def test_an_early_stop_narrows_the_run(pytester, world):
    (meta(world) / "wnid_to_label.json").unlink()
    run = run_checks(pytester, "-m", "imagenet", "-x", world=world)
    assert run.ret == 1 and run.report["ok"] is False and run.report["complete"] is False
    assert any("early stop" in n for n in run.report["narrowed_by"])


def test_the_whole_checklist_is_complete(pytester, world):
    run = run_checks(pytester, "-m", "imagenet", world=world)
    assert run.ret == 0 and run.report["complete"] is True and run.report["narrowed_by"] == []
    assert verdict(run) == "READY for -m 'imagenet'" == last_line_of_table(run)


# --------------------------------------------------------------------------- nothing is READY over nothing


def test_an_absent_optional_asset_alone_is_not_ready(pytester, world):
    (world / "data" / "raw" / "coco_val2017").unlink()  # a symlink into the kagglehub cache
    run = run_checks(pytester, "-m", "coco", world=world)
    assert run.ret == 1 and run.report["ok"] is False
    assert run.status("coco_val2017") == "optional-absent"
    assert "no check passed" in verdict(run) and "coco_val2017 absent" in verdict(run)


def test_the_tiny_world_names_the_cpu_as_its_own_choice(pytester, world):
    """No --device given: the gpu row says --tiny chose the CPU, not that someone asked for it."""
    run = run_checks(pytester, "-m", "(imagenet or gpu) and not model", world=world)
    assert run.ret == 0, run.result.stdout.str()
    assert "gpu not checked (--tiny runs on the CPU)" in verdict(run), verdict(run)


@pytest.mark.torch
def test_device_cpu_names_the_gpu_as_not_checked(pytester, model_world):
    run = run_checks(pytester, "-m", "phase1", "--device=cpu", world=model_world)
    assert run.ret == 0, run.result.stdout.str()
    assert run.report["not_checked"] == ["gpu"] and run.status("gpu") == "not-checked"
    assert verdict(run).startswith("READY for -m 'phase1'") and "gpu not checked (--device cpu" in verdict(run)


@pytest.mark.torch
def test_login_node_command_without_gpu_is_ready(pytester, model_world):
    """README: `pytest -m "phase2 and not gpu"` on a machine without a GPU, default --device (cuda)."""
    run = run_checks(pytester, "-m", "phase2 and not gpu", "--device=cuda", world=model_world)
    assert run.ret == 0, run.result.stdout.str()
    assert run.report["ok"] is True and "gpu" not in run.statuses()
    assert "see the gpu row" not in run.result.stdout.str()
    assert all(s == "ready" for s in run.statuses().values()), run.statuses()
    assert any("on cpu" in line for a in run.report["assets"] for line in a["info"] if a["name"] == "clip_b32")


# --------------------------------------------------------------------------- typed outcomes


EXTRA_CHECKS = '''
import pytest

@pytest.mark.asset("imagenet_meta")
def test_unclassified_skip():
    pytest.skip("a reason in no known shape")

@pytest.mark.asset("coco_val2017")
def test_unexpected_exception(asset):
    raise FileNotFoundError(2, "No such file or directory", "/nowhere/annotations.json")
'''


def test_outcomes_no_check_classified_are_not_checked_never_silence(pytester, world):
    extra = pytester.makepyfile(test_extra_checks=EXTRA_CHECKS)
    run = run_checks(pytester, str(extra), "-m", "imagenet or coco", world=world)
    assert run.ret == 1 and run.report["ok"] is False
    assert run.status("imagenet_meta") == "not-checked" and run.status("coco_val2017") == "not-checked"
    meta_row = next(a for a in run.report["assets"] if a["name"] == "imagenet_meta")
    assert any("a reason in no known shape" in p for p in meta_row["problems"])
    coco_row = next(a for a in run.report["assets"] if a["name"] == "coco_val2017")
    assert any("could not check: FileNotFoundError" in p and "/nowhere/annotations.json" in p
               for p in coco_row["problems"])
    assert "object at 0x" not in run.result.stdout.str()


def test_each_failure_is_printed_once(pytester, world):
    (meta(world) / "wnid_to_label.json").unlink()
    run = run_checks(pytester, "-m", "imagenet", world=world)
    out = run.result.stdout.str()
    assert run.ret == 1 and "= FAILURES =" not in out and "short test summary" not in out
    assert out.count("metadata files missing") == 1


# --------------------------------------------------------------------------- fixes that work


def run_fix(commands: list[str]) -> None:
    assert commands, "the row printed no command to run"
    for command in commands:
        subprocess.run(command, shell=True, cwd=PROJECT, check=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(PROJECT)})


def test_the_printed_mv_repairs_a_tree_one_level_too_deep(pytester, world):
    val = world / "data" / "raw" / "imagenet_val"
    inner = val / "val"
    inner.mkdir()
    for wnid in [p for p in val.iterdir() if p.name != "val"]:
        wnid.rename(inner / wnid.name)
    run = run_checks(pytester, "-m", "imagenet", world=world)
    row = next(a for a in run.report["assets"] if a["name"] == "imagenet_val")
    assert row["status"] == "broken" and row["fix_commands"][0].startswith("mv ")
    run_fix(row["fix_commands"])
    assert run_checks(pytester, "-m", "imagenet", world=world).status("imagenet_val") == "ready"


def test_a_broken_tree_is_moved_aside_before_the_reorganize(pytester, world):
    val = world / "data" / "raw" / "imagenet_val"
    for wnid in sorted(val.iterdir())[:3]:
        shutil.rmtree(wnid)
    row = next(a for a in run_checks(pytester, "-m", "imagenet", world=world).report["assets"]
               if a["name"] == "imagenet_val")
    assert row["status"] == "broken"
    assert row["fix"].startswith(f"mv {val} {val}.moved-aside-") and "--reorganize-imagenet" in row["fix"]
    assert row["fix_commands"] == []  # the tar must be downloaded by a person first


@pytest.mark.parametrize("make_root, phrase", [
    (lambda p: p.write_text("not a folder") and p, "is not a folder"),
    (lambda p: p / "nonexistent", "does not exist"),
])
def test_a_bad_data_root_is_one_run_wide_problem(pytester, tmp_path, monkeypatch, make_root, phrase):
    clean_environment(monkeypatch)
    root = make_root(tmp_path / "root")
    out = tmp_path / "r.json"
    result = pytester.runpytest_inprocess(str(CHECKS), "-p", "no:cacheprovider", "-m", "imagenet and not model",
                                          f"--data-root={root}", f"--report-json={out}")
    report = json.loads(out.read_text())
    assert result.ret == 1 and report["ok"] is False
    assert len(report["problems"]) == 1 and phrase in report["problems"][0] and str(root) in report["problems"][0]
    assert "--data-root=PATH" in report["problems"][0]


def test_the_printed_meta_fix_repairs_the_row(pytester, tmp_path, monkeypatch, http_mirror, reference_imagenet):
    """A real-layout data root without metadata; the printed fetch (through a mirror) makes the row ready."""
    clean_environment(monkeypatch)
    monkeypatch.setenv("PREFLIGHT_MIRROR", http_mirror.url)
    from tests.test_fetch_cli import serve_reference_meta

    serve_reference_meta(http_mirror, reference_imagenet)
    root = tmp_path / "data"
    root.mkdir()
    out = tmp_path / "r.json"
    args = (str(CHECKS), "-p", "no:cacheprovider", "-m", "imagenet and not model", f"--data-root={root}",
            f"--report-json={out}")
    pytester.runpytest_inprocess(*args)
    row = next(a for a in json.loads(out.read_text())["assets"] if a["name"] == "imagenet_meta")
    assert row["status"] == "missing" and row["fix_commands"] == [f"python -m fetchers --imagenet-map --data-root={root}"]
    run_fix(row["fix_commands"])
    pytester.runpytest_inprocess(*args)
    row = next(a for a in json.loads(out.read_text())["assets"] if a["name"] == "imagenet_meta")
    assert row["status"] == "ready", row


def test_verdict_line_is_the_last_line_and_matches_json(pytester, world):
    run = run_checks(pytester, "-m", "imagenet", world=world)
    assert last_line_of_table(run) == verdict(run)


def test_an_interrupted_run_is_never_ready(tmp_path, world):
    """Ctrl-C mid-run (a KeyboardInterrupt in a check): the verdict says the run was cut short."""
    extra = tmp_path / "test_zz_interrupt.py"
    extra.write_text('import pytest\n\n@pytest.mark.asset("imagenet_meta")\ndef test_ctrl_c():\n'
                     '    raise KeyboardInterrupt\n')
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, "-m", "pytest", f"--rootdir={PROJECT}", "-c", str(PROJECT / "pytest.ini"),
                           "-p", "no:cacheprovider", str(CHECKS / "test_imagenet_meta.py"), str(extra),
                           f"--tiny-world={world}", f"--report-json={out}"],
                          cwd=PROJECT, capture_output=True, text=True, timeout=300)
    report = json.loads(out.read_text())
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, proc.stdout[-2000:]
    assert report["complete"] is False and "an interruption (Ctrl-C)" in report["narrowed_by"]
    assert report["ok"] is False and report["verdict"].startswith("NOT READY"), report["verdict"]


def test_the_printed_fix_repairs_a_metadata_file_that_does_not_parse(pytester, tmp_path, monkeypatch, http_mirror,
                                                                     reference_imagenet):
    """The user's broken file is moved aside (never deleted), then the fetch replaces it: the row turns ready."""
    from tests.test_fetch_cli import serve_reference_meta

    clean_environment(monkeypatch)
    monkeypatch.setenv("PREFLIGHT_MIRROR", http_mirror.url)
    serve_reference_meta(http_mirror, reference_imagenet)
    root = tmp_path / "data"
    run_fix([f"python -m fetchers --imagenet-map --data-root={root}"])
    broken = root / "imagenet_meta" / "wnid_to_label.json"
    broken.write_text("{")
    out = tmp_path / "r.json"
    args = (str(CHECKS), "-p", "no:cacheprovider", "-m", "imagenet and not model", f"--data-root={root}",
            f"--report-json={out}")
    pytester.runpytest_inprocess(*args)
    row = next(a for a in json.loads(out.read_text())["assets"] if a["name"] == "imagenet_meta")
    assert row["status"] == "broken" and any("not valid JSON" in p for p in row["problems"])
    assert row["fix_commands"][0].startswith("mv ") and row["fix_commands"][-1].startswith("python -m fetchers")
    run_fix(row["fix_commands"])
    assert (root / "imagenet_meta" / "wnid_to_label.json.old").read_text() == "{"  # kept, not deleted
    pytester.runpytest_inprocess(*args)
    row = next(a for a in json.loads(out.read_text())["assets"] if a["name"] == "imagenet_meta")
    assert row["status"] == "ready", row
