"""pytest as a person types it: path options with a space, from any folder, in another project that installed preflight.

Each case runs pytest in a real subprocess: option parsing, the rootdir and the current folder are
decided by pytest's start-up, which an in-process run would not exercise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.checkrun import PROJECT

LIGHT = ("-p", "no:cacheprovider", "-m", "imagenet and not model")


def pytest_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`pytest ARGS` in ``cwd``, with this checkout's plugin (the entry point resolves through PYTHONPATH)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFLIGHT_", "PYTEST_"))}
    base["PYTHONPATH"] = os.pathsep.join([str(PROJECT), *filter(None, [os.environ.get("PYTHONPATH")])])
    base["COLUMNS"] = base.get("COLUMNS", "120")
    return subprocess.run([sys.executable, "-m", "pytest", *args], cwd=cwd, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def paths(tmp_path: Path) -> dict[str, Path]:
    """Path values that exist (pytest mistakes an existing path for a file argument)."""
    (tmp_path / "data").mkdir()
    (tmp_path / "r.json").write_text("{}")
    (tmp_path / "val.tar").write_bytes(b"")
    return {"data": tmp_path / "data", "json": tmp_path / "r.json", "tar": tmp_path / "val.tar"}


@pytest.mark.parametrize("where", [".", "data"])
@pytest.mark.parametrize("option", ["--report-json", "--data-root", "--imagenet-tar"])
def test_a_path_option_written_with_a_space_keeps_the_project(paths, where, option):
    value = {"--report-json": paths["json"], "--data-root": paths["data"], "--imagenet-tar": paths["tar"]}[option]
    extra = () if option == "--report-json" else ("--report-json", str(paths["json"]))
    proc = pytest_cli(*LIGHT, option, str(value), *extra, cwd=PROJECT / where)
    out = proc.stdout
    assert f"rootdir: {PROJECT}" in out and "configfile: pytest.ini" in out, out[-3000:]
    assert "tests/" not in out and "no tests ran" not in out
    report = json.loads(paths["json"].read_text())  # written over the file that was there
    assert report["selection"] == "-m 'imagenet and not model'" and report["complete"] is True
    assert out.rstrip().splitlines()[-2].startswith("NOT READY"), out[-3000:]
    if option == "--data-root":
        assert f"data root {paths['data']} (command line --data-root)" in out


def test_the_same_command_twice_with_an_existing_report(paths):
    """The README's `--report-json PATH`: the second run finds the file from the first."""
    paths["json"].unlink()
    for _ in range(2):
        proc = pytest_cli(*LIGHT, "--data-root", str(paths["data"]), "--report-json", str(paths["json"]), cwd=PROJECT)
        assert f"rootdir: {PROJECT}" in proc.stdout and proc.returncode == 1, proc.stdout[-3000:]
    assert json.loads(paths["json"].read_text())["ok"] is False


def test_a_subfolder_of_the_project_gets_a_verdict(paths):
    proc = pytest_cli(*LIGHT, f"--data-root={paths['data']}", cwd=PROJECT / "data")
    assert "preflight readiness" in proc.stdout and proc.returncode == 1, proc.stdout[-3000:]
    assert proc.stdout.rstrip().splitlines()[-2].startswith("NOT READY for -m 'imagenet and not model'")


def test_another_project_that_installed_preflight(tmp_path, paths):
    """Its own test runs are pytest's as usual; `--pyargs checks` runs the checks there."""
    project = tmp_path / "research"
    project.mkdir()
    (project / "pytest.ini").write_text("[pytest]\n")
    (project / "test_own.py").write_text("def test_own():\n    assert 1 + 1 == 3\n")
    own = pytest_cli("-p", "no:cacheprovider", cwd=project)
    assert own.returncode == 1 and "1 failed" in own.stdout
    assert "assert (1 + 1) == 3" in own.stdout, "the project's own tracebacks are shown as usual"
    assert "preflight" not in own.stdout.replace("plugins: preflight", "")
    checks = pytest_cli("--pyargs", "checks", *LIGHT, f"--data-root={paths['data']}",
                        f"--report-json={paths['json']}", cwd=project)
    assert "preflight readiness" in checks.stdout and checks.returncode == 1, checks.stdout[-3000:]
    assert "test_own" not in checks.stdout
    report = json.loads(paths["json"].read_text())  # the whole checklist: a verdict, not a narrowed run
    assert report["complete"] is True and report["narrowed_by"] == [], report["narrowed_by"]
    assert "narrowed" not in checks.stdout.rstrip().splitlines()[-2]


def test_a_mistyped_marker_is_a_usage_error_that_lists_the_markers():
    proc = pytest_cli("-p", "no:cacheprovider", "-m", "phse1 and not gpu", cwd=PROJECT)
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "no marker named phse1" in proc.stderr and "phase1, phase2, phase3" in proc.stderr


def test_help_markers_and_fixtures_of_a_user_run():
    """`--help` names values like PATH; pytester's fixtures and marker are the self-tests' alone; no fixture
    shadows one of pytest's own."""
    helptext = " ".join(pytest_cli("--help", cwd=PROJECT).stdout.split())
    assert "--data-root=PATH" in helptext and "--report-json=PATH" in helptext and "=PREFLIGHT_" not in helptext
    assert "size, mtime, inode, ctime" in helptext and "path+size+mtime" not in helptext
    markers = pytest_cli("--markers", cwd=PROJECT).stdout
    assert "@pytest.mark.phase1:" in markers and "pytester" not in markers
    fixtures = pytest_cli("--fixtures", "-p", "no:cacheprovider", cwd=PROJECT).stdout
    assert "pytester" not in fixtures
    listed = [line.split(" -- ") for line in pytest_cli("--fixtures", cwd=PROJECT).stdout.splitlines() if " -- " in line]
    ours = {name for name, where in listed if where.startswith("checks/")}
    theirs = {name for name, where in listed if not where.startswith("checks/")}
    assert "cache" in theirs and not ours & theirs, ours & theirs


def test_the_header_names_where_models_load_when_no_gpu_check_is_selected():
    proc = pytest_cli("-p", "no:cacheprovider", "--co", "-m", "phase2 and not gpu", cwd=PROJECT)
    header = next(line for line in proc.stdout.splitlines() if line.startswith("preflight: selection"))
    assert "models load on cpu" in header and "cuda" not in header, header
