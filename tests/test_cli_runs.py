"""What a person or CI sees of a whole run, in a real subprocess: Ctrl-C and SIGTERM, --junitxml, the terminal width."""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from checks.tiny import build_tiny_world
from tests.checkrun import CHECKS, PROJECT, clean_environment
from tests.test_invocation import pytest_cli


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    clean_environment(monkeypatch)
    build_tiny_world(tmp_path / "world", models=False)
    return tmp_path / "world"


def pytest_counts(output: str) -> int:
    """How many tests pytest's closing line counts (passed, failed, skipped, errors)."""
    last = [line for line in output.splitlines() if re.search(r"\d+ (passed|failed|skipped)", line)][-1]
    return sum(int(n) for n, _ in re.findall(r"(\d+) (passed|failed|skipped|errors?)", last))


@pytest.mark.parametrize(("sig", "by"), [(signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM")])
def test_an_interrupted_run_is_never_ready(tmp_path, world, sig, by):
    started = tmp_path / "started"
    slow = tmp_path / "test_zz_slow.py"
    slow.write_text('import pathlib, time, pytest\n\n@pytest.mark.asset("imagenet_meta")\ndef test_slow():\n'
                    f'    pathlib.Path({str(started)!r}).touch()\n    time.sleep(120)\n')
    out = tmp_path / "r.json"
    out.write_text('{"ok": true}')  # an older report: the interrupted run must not leave it standing
    cmd = [sys.executable, "-m", "pytest", f"--rootdir={PROJECT}", "-c", str(PROJECT / "pytest.ini"),
           "-p", "no:cacheprovider", str(CHECKS / "test_imagenet_meta.py"), str(slow),
           f"--tiny-world={world}", "--report-json", str(out)]
    proc = subprocess.Popen(cmd, cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert started.exists(), proc.communicate(timeout=60)[0][-3000:]
        assert json.loads(out.read_text())["ok"] is False, "while the run goes on, the old READY is gone"
        proc.send_signal(sig)
        output = proc.communicate(timeout=120)[0]
    finally:
        proc.kill()
    report = json.loads(out.read_text())
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, output[-3000:]
    assert report["ok"] is False and report["complete"] is False
    verdict = next(line for line in output.splitlines() if line.startswith(("READY", "NOT READY")))
    assert verdict == report["verdict"] and verdict.startswith("NOT READY"), output[-3000:]
    ran = int(re.search(rf"^NOT READY — interrupted by {by} after (\d+) checks, not a verdict on", verdict).group(1))
    assert ran == pytest_counts(output) > 0, output[-3000:]


def test_junitxml_carries_the_verdict_as_plain_properties(tmp_path, world):
    xml = tmp_path / "junit.xml"
    proc = pytest_cli(str(CHECKS), "-p", "no:cacheprovider", "-m", "imagenet and not model", f"--tiny-world={world}",
                      "--junitxml", str(xml), cwd=PROJECT)
    assert proc.returncode == 0, proc.stdout[-3000:]
    suite = ET.parse(xml).getroot().find("testsuite")
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["preflight_ok"] == "true" and props["preflight_complete"] == "true"
    assert props["preflight_verdict"] == "READY for -m 'imagenet and not model'"
    assert props["preflight_selection"] == "-m 'imagenet and not model'" and props["preflight_narrowed_by"] == ""
    values = [p.get("value") for p in ET.parse(xml).getroot().iter("property")]
    assert values and not [v for v in values if re.match(r"[(\[{]'", v)], "Python reprs in the XML"
    case_props = {p.get("name"): p.get("value") for p in suite.find("testcase").iter("property")}
    assert case_props["preflight_asset"] in ("imagenet_val", "imagenet_meta")
    sizes = [p.get("value") for p in suite.iter("property") if p.get("name") == "preflight_bytes"]
    assert sizes and all(v.isdigit() for v in sizes)


def test_junitxml_of_a_run_that_is_not_ready(tmp_path):
    xml, data = tmp_path / "junit.xml", tmp_path / "data"
    data.mkdir()
    proc = pytest_cli(str(CHECKS), "-p", "no:cacheprovider", "-m", "imagenet and not model", f"--data-root={data}",
                      "-k", "present", f"--junitxml={xml}", cwd=PROJECT)
    assert proc.returncode == 1, proc.stdout[-3000:]
    props = {p.get("name"): p.get("value") for p in ET.parse(xml).getroot().find("testsuite").find("properties")}
    assert props["preflight_ok"] == "false" and props["preflight_complete"] == "false"
    assert props["preflight_narrowed_by"] == "-k 'present'" and props["preflight_verdict"].startswith("NOT READY")


def table(output: str) -> list[str]:
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if "preflight readiness" in line)
    end = next(i for i in range(len(lines) - 1, start, -1) if lines[i].startswith(("READY", "NOT READY")))
    return lines[start + 1:end + 1]


def test_fix_commands_are_printed_whole_at_every_width(tmp_path):
    """Each command of a fix is one line of the table, as in the JSON, whatever the terminal's width."""
    root = tmp_path / "a folder with a rather long name for the data" / "raw"
    root.mkdir(parents=True)
    tar = tmp_path / "downloads of the ImageNet validation set" / "ILSVRC2012_img_val.tar"
    tar.parent.mkdir()
    tar.write_bytes(b"")
    out = tmp_path / "r.json"
    for columns in ("60", "80", "200"):
        proc = pytest_cli(str(CHECKS), "-p", "no:cacheprovider", "-m", "imagenet and not model", "-k", "present",
                          f"--data-root={root}", f"--imagenet-tar={tar}", f"--report-json={out}", cwd=PROJECT,
                          env={"COLUMNS": columns})
        commands = next(a for a in json.loads(out.read_text())["assets"] if a["name"] == "imagenet_val")["fix_commands"]
        assert commands and str(tar) in commands[-1], commands
        printed = [line.strip() for line in table(proc.stdout)]
        for command in commands:
            assert command in printed, (columns, command, proc.stdout[-3000:])


def test_a_command_after_a_persons_step_gets_a_line_of_its_own(tmp_path):
    """No tar yet: the person downloads it first; the command to run then is a line of its own, whole."""
    root = tmp_path / "a folder with a rather long name for the data" / "raw"
    root.mkdir(parents=True)
    out = tmp_path / "r.json"
    for columns in ("60", "80", "200"):
        proc = pytest_cli(str(CHECKS), "-p", "no:cacheprovider", "-m", "imagenet and not model", "-k", "present",
                          f"--data-root={root}", f"--report-json={out}", cwd=PROJECT, env={"COLUMNS": columns})
        row = next(a for a in json.loads(out.read_text())["assets"] if a["name"] == "imagenet_val")
        assert row["fix_commands"] == [] and "account needed" in row["fix"]  # a person acts first
        command = shlex.join(["python", "-m", "fetchers", "--reorganize-imagenet", "/path/to/ILSVRC2012_img_val.tar",
                              f"--data-root={root}"])
        assert row["fix"].endswith(command), row["fix"]
        lines = table(proc.stdout)
        assert command in [line.strip() for line in lines], (columns, proc.stdout[-3000:])
        assert all(len(line) <= int(columns) for line in lines if "account needed" in line or "then run" in line)


def test_the_table_escapes_what_it_prints(tmp_path):
    root = tmp_path / "data\x1b[31mred" / "raw"
    root.mkdir(parents=True)
    proc = pytest_cli(str(CHECKS), "-p", "no:cacheprovider", "-m", "imagenet and not model", "-k", "present",
                      f"--data-root={root}", cwd=PROJECT)
    assert "\x1b" not in proc.stdout and "data\\x1b[31mred" in proc.stdout, proc.stdout[-3000:]


def test_a_location_that_does_not_fit_gets_a_line_of_its_own_at_80_columns():
    with tempfile.TemporaryDirectory(prefix="pf", dir="/tmp") as tmp:
        root = Path(tmp) / ("d" * (62 - len(tmp) - len("/raw/imagenet_val") - 1)) / "raw"
        root.mkdir(parents=True)
        path = str(root / "imagenet_val")
        assert len(path) == 62
        proc = pytest_cli(str(CHECKS), "-p", "no:cacheprovider", "-m", "imagenet and not model", "-k", "present",
                          f"--data-root={root}", cwd=PROJECT, env={"COLUMNS": "80"})
    lines = table(proc.stdout)
    assert "    at " + path in lines, lines
    assert all(len(line) <= 80 for line in lines if path in line and "fix" not in line), lines


@pytest.mark.torch
def test_a_tiny_run_under_xdist_says_each_thing_once():
    """Skip reasons without the exception's class, no warning twice, no transformers noise about its own
    defaults from every worker, and the tiny world's build time beside pytest's."""
    proc = pytest_cli("--tiny", "-p", "no:cacheprovider", "-n", "2", "-rs", "-m", "siglip2 or imagenet", cwd=PROJECT)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "CheckSkipped" not in out and "SKIPPED" in out and "runs with --deep" in out
    before_table = out.split("preflight readiness")[0]
    assert "grayscale" not in before_table, "a warning the table shows is not also in pytest's warnings summary"
    assert any("grayscale" in line for line in table(proc.stdout))
    assert "bos_token_id" not in out and "eos_token_id" not in out
    assert re.search(r"preflight: the tiny world took \d+\.\ds to build", out)


def test_a_worker_that_crashes_mid_check_is_never_ready(tmp_path, world):
    crash = tmp_path / "test_zz_crash.py"
    crash.write_text('import os, signal, pytest\n\n@pytest.mark.asset("imagenet_meta")\ndef test_crash():\n'
                     '    os.kill(os.getpid(), signal.SIGKILL)\n')
    out = tmp_path / "r.json"
    proc = pytest_cli(f"--rootdir={PROJECT}", "-c", str(PROJECT / "pytest.ini"), "-p", "no:cacheprovider", "-n", "2",
                      str(CHECKS / "test_imagenet_meta.py"), str(crash), f"--tiny-world={world}", f"--report-json={out}",
                      cwd=PROJECT)
    report = json.loads(out.read_text())
    assert proc.returncode == 1 and report["ok"] is False, proc.stdout[-3000:]
    assert any("test_crash failed without a preflight outcome" in p for p in report["problems"]), report["problems"]
    assert report["verdict"].startswith("NOT READY") and "1 run-wide problem" in report["verdict"]
