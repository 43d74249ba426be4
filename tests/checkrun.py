"""Run preflight's checks inside a self-test with pytester, and read what happened."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
CHECKS = PROJECT / "checks"


@dataclass
class CheckRun:
    result: pytest.RunResult
    report: dict

    @property
    def ret(self) -> int:
        return int(self.result.ret)

    def outcomes(self) -> dict[str, str]:
        """'test_module.py::test_name[param]' -> passed / failed / skipped."""
        out = {}
        for rep in self.result.reprec.getreports("pytest_runtest_logreport"):
            key = rep.nodeid.split("checks/", 1)[-1]
            if rep.when == "call" or rep.outcome != "passed":
                out[key] = rep.outcome
        return out

    def failed(self) -> set[str]:
        return {k for k, v in self.outcomes().items() if v == "failed"}

    def message(self, test: str) -> str:
        for rep in self.result.reprec.getreports("pytest_runtest_logreport"):
            if rep.nodeid.endswith(test) and rep.outcome != "passed":
                return rep.longreprtext if rep.failed else str(rep.longrepr[2])
        raise KeyError(f"{test} did not fail or skip")

    def status(self, asset: str) -> str | None:
        return next((a["status"] for a in self.report["assets"] if a["name"] == asset), None)

    def statuses(self) -> dict[str, str]:
        return {a["name"]: a["status"] for a in self.report["assets"]}


def run_checks(pytester: pytest.Pytester, *args: str, world: Path | None = None) -> CheckRun:
    """Run the checks of this repository in-process; ``world`` is a tiny world folder."""
    report_path = pytester.path / f"report-{len(list(pytester.path.glob('report-*.json')))}.json"
    argv = [str(CHECKS), "-p", "no:cacheprovider", f"--report-json={report_path}"]
    if world is not None:
        argv.append(f"--tiny-world={world}")
    result = pytester.runpytest_inprocess(*argv, *args)
    report = json.loads(report_path.read_text()) if report_path.exists() else {"assets": [], "ok": None}
    return CheckRun(result, report)


def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The outer shell's PREFLIGHT_* settings must not leak into the runs under test."""
    for name in list(os.environ):
        if name.startswith("PREFLIGHT_"):
            monkeypatch.delenv(name)


def run_in_fresh_process(world: Path, *args: str) -> tuple[str, bool]:
    """Run the checks on ``world`` in a new interpreter: (its output, whether it imported torch)."""
    code = ("import sys, pytest; rc = pytest.main(sys.argv[1:]); "
            "print('TORCH_IMPORTED' if 'torch' in sys.modules else 'NO_TORCH'); sys.exit(rc)")
    argv = [str(CHECKS), "-q", "-p", "no:cacheprovider", f"--tiny-world={world}", *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFLIGHT_")}
    out = subprocess.run([sys.executable, "-c", code, *argv], cwd=PROJECT, env=env, capture_output=True, text=True)
    return out.stdout, "TORCH_IMPORTED" in out.stdout.splitlines()[-1:]
