"""`pytest --fleet` on a real one-host Slurm (scripts/slurm-test-cluster.sh): slurmctld + node01-03."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from checks.tiny import build_tiny_world
from tests.checkrun import CHECKS, PROJECT

SCRIPT = PROJECT / "scripts" / "slurm-test-cluster.sh"
SLURM_CONF = os.environ.get("SLURM_CONF", "")

pytestmark = [pytest.mark.skipif(
    shutil.which("salloc") is None or not SLURM_CONF or not Path(SLURM_CONF).is_file(),
    reason=f"no test Slurm: as root, bash {SCRIPT.relative_to(PROJECT)} start (installs slurm-wlm and munge, starts "
           "node[01-03]), then SLURM_CONF=/tmp/preflight-slurm/slurm.conf python -m pytest tests/test_fleet_slurm.py"),
    pytest.mark.xdist_group("slurm")]


@pytest.fixture(scope="module")
def slurm() -> Iterator[dict]:
    """The cluster's environment; started here (and stopped after) unless it is already up."""
    env = {**os.environ, "PREFLIGHT_SLURM_DIR": str(Path(SLURM_CONF).parent)}
    up = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True, timeout=30)
    started = up.returncode != 0 or "idle" not in up.stdout
    if started:
        subprocess.run(["bash", str(SCRIPT), "start"], env=env, check=True, timeout=1200)
    yield env
    if started:
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, timeout=120)


@pytest.fixture(scope="module")
def worlds(tmp_path_factory) -> tuple[Path, Path]:
    """A clean tiny world, and one whose ImageNet val lost an image (what one node's mount holds)."""
    root = tmp_path_factory.mktemp("fleet-worlds")
    build_tiny_world(root / "good")
    build_tiny_world(root / "bad")
    next(iter(sorted((root / "bad" / "data" / "raw" / "imagenet_val").rglob("*.JPEG")))).unlink()
    return root / "good", root / "bad"


def fleet(slurm: dict, world: Path, folder: Path, *args: str, faults: dict[str, str] | None = None,
          limit: float = 240, salloc: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """`salloc -N3 pytest -m "phase1 and not gpu" --fleet` on the tiny world, as a user would type it."""
    env = {k: v for k, v in slurm.items() if not k.startswith(("PREFLIGHT_", "FAKE_FLEET_", "SLURM_"))}
    env.update(SLURM_CONF=slurm["SLURM_CONF"], PYTHONPATH=str(PROJECT), PREFLIGHT_TINY_WORLD=str(world),
               PREFLIGHT_DEVICE="cpu")
    env.update({f"FAKE_FLEET_{n}": a for n, a in (faults or {}).items()})
    argv = ["salloc", "-N3", "--time=10", *salloc, sys.executable, "-m", "pytest", str(CHECKS), "-m", "phase1 and not gpu",
            "-p", "no:cacheprovider", "-p", "no:randomly", "-p", "tests.fakes.fleet_faults", "--fleet",
            f"--fleet-dir={folder}", f"--fleet-timeout={limit}", *args]
    return subprocess.run(argv, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=limit + 180)


def test_three_ready_nodes_exit_0_with_one_table(slurm, worlds, tmp_path):
    run = fleet(slurm, worlds[0], tmp_path / "reports", f"--report-json={tmp_path / 'merged.json'}",
                salloc=("--gres=gpu:2",))
    assert run.returncode == 0, run.stdout + run.stderr
    identities = {json.loads(p.read_text())["node"]: json.loads(p.read_text())
                  for p in (tmp_path / "reports").glob("node0?.json")}
    assert sorted(identities) == ["node01", "node02", "node03"]  # Slurm node names, not the host's name
    assert {(r["step"], r["cuda_visible_devices"]) for r in identities.values()} == {("0", "0,1")}
    assert sorted(r["procid"] for r in identities.values()) == ["0", "1", "2"]
    assert len({r["job"] for r in identities.values()}) == 1
    merged = json.loads((tmp_path / "merged.json").read_text())
    assert (merged["ok"], merged["ready"], merged["expected"]) == (True, 3, 3)
    assert run.stdout.count("node    verdict") == 1
    for node in ("node01", "node02", "node03"):
        assert f"{node}  ready " in run.stdout
    assert run.stdout.rstrip().endswith("3/3 nodes ready")
    assert sorted(p.name for p in (tmp_path / "reports").glob("node*.json")) == \
        ["node01.exit.json", "node01.json", "node02.exit.json", "node02.json", "node03.exit.json", "node03.json"]


def test_a_node_with_a_broken_data_root_is_named_with_its_fix(slurm, worlds, tmp_path):
    run = fleet(slurm, worlds[0], tmp_path / "reports", faults={"node02": f"env:PREFLIGHT_TINY_WORLD={worlds[1]}"})
    assert run.returncode == 1, run.stdout + run.stderr
    assert "node02  not ready  broken" in run.stdout
    assert "fix for node02 (1 node):" in run.stdout
    assert "2/3 nodes ready — resubmit with --exclude=node02" in run.stdout


def test_a_killed_and_a_hanging_node_are_no_report_rows_with_their_cause(slurm, worlds, tmp_path):
    run = fleet(slurm, worlds[0], tmp_path / "reports", faults={"node01": "kill", "node03": "hang"}, limit=60)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "node01  NO REPORT" in run.stdout and "NO REPORT: killed by SIGKILL" in run.stdout
    assert "node03  NO REPORT" in run.stdout and "NO REPORT: timed out after 60.0 s" in run.stdout
    assert "node02  ready" in run.stdout
    assert "1/3 nodes ready — resubmit with --exclude=node[01,03]" in run.stdout


def test_a_foreign_file_in_the_report_folder_means_no_verdict_naming_it(slurm, worlds, tmp_path):
    folder = tmp_path / "reports"
    folder.mkdir()
    (folder / "node17.json").write_text('{"schema": "preflight-fleet-node/1", "node": "node17", "ass')  # truncated
    run = fleet(slurm, worlds[0], folder)
    assert run.returncode == 2, run.stdout + run.stderr
    assert f"NO VERDICT — {folder / 'node17.json'} is not whole JSON" in run.stdout
