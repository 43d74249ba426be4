"""Text from outside (an HTTP reason phrase here) is shown escaped everywhere: stdout, stderr, the JSON, JUnit.

Issue 17.6: a mirror answering ``403 "Forbidden \\x1b]0;…\\x07\\x1b[2J\\x1b[31mFAKE: all good, READY"`` got
those escape sequences into the terminal (they can clear the screen and paint a fake verdict).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from checks.tiny import build_tiny_world
from tests.checkrun import CHECKS, PROJECT
from tests.fakes.http_server import Fault

HOSTILE_REASON = "Forbidden \x1b]0;owned\x07\x1b[2J\x1b[31mFAKE: all good, READY\x1b[0m"
# C0 controls but tab and newline, DEL, and the C1 controls as UTF-8 (\x9b is a one-byte CSI)
RAW_CONTROL = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]|\xc2[\x80-\x9f]")


def raw_controls(data: bytes) -> list[bytes]:
    return RAW_CONTROL.findall(data)


@pytest.fixture
def hostile_mirror(http_mirror):
    http_mirror.default_fault = Fault(status=403, reason=HOSTILE_REASON)
    yield http_mirror
    http_mirror.default_fault = None


def environment(mirror_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFLIGHT_")}
    return env | {"PREFLIGHT_MIRROR": mirror_url, "PYTHONPATH": str(PROJECT), "HF_HUB_OFFLINE": "1"}


def test_a_hostile_reason_phrase_is_escaped_in_the_pytest_run(tmp_path, hostile_mirror):
    world = build_tiny_world(tmp_path / "world", models=False)
    shutil.rmtree(world.data_root / "imagenet_meta")
    report, junit = tmp_path / "r.json", tmp_path / "j.xml"
    proc = subprocess.run([sys.executable, "-m", "pytest", str(CHECKS), "-p", "no:cacheprovider",
                           f"--tiny-world={tmp_path / 'world'}", "--fetch-missing", "-m", "imagenet",
                           f"--report-json={report}", f"--junitxml={junit}"],
                          cwd=PROJECT, env=environment(hostile_mirror.url), capture_output=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out.decode(errors="replace")
    for name, data in (("stdout", proc.stdout), ("stderr", proc.stderr), ("JSON", report.read_bytes()),
                       ("JUnit", junit.read_bytes())):
        assert not raw_controls(data), (name, raw_controls(data))
    row = next(a for a in json.loads(report.read_text())["assets"] if a["name"] == "imagenet_meta")
    text = " ".join(row["problems"])
    assert "HTTP 403 Forbidden \\x1b]0;owned\\x07\\x1b[2J" in text, text  # shown, escaped
    assert "Traceback" not in out.decode(errors="replace")


def test_a_hostile_reason_phrase_is_escaped_by_the_fetch_cli(tmp_path, hostile_mirror):
    proc = subprocess.run([sys.executable, "-m", "fetchers", "--imagenet-map", f"--data-root={tmp_path / 'data'}"],
                          cwd=PROJECT, env=environment(hostile_mirror.url), capture_output=True, timeout=120)
    assert proc.returncode == 1
    assert not raw_controls(proc.stdout) and not raw_controls(proc.stderr), raw_controls(proc.stderr)
    assert b"HTTP 403 Forbidden \\x1b]0;owned\\x07" in proc.stderr, proc.stderr
