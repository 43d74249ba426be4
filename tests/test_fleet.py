"""The fleet merge without Slurm: synthetic node reports, and N local processes with simulated SLURM_* variables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from checks.fleet import SCHEMA, main, write_node_report
from checks.fleet_run import node_args, run_node
from checks.tiny import build_tiny_world
from tests.checkrun import CHECKS, PROJECT

NODES = "node[01-04]"


def report(ok: bool = True, **asset) -> dict:
    row = {"name": "imagenet_val", "status": "ready", "problems": [], "fix": "", "fix_commands": [], **asset}
    return {"ok": ok, "complete": True, "problems": [], "verdict": "READY" if ok else "NOT READY", "assets": [row]}


MISSING_CACHE = report(False, status="missing", problems=["ImageNet val: data/raw/imagenet_val does not exist"],
                       fix="fetch it", fix_commands=["python -m fetchers --imagenet-map"])


def write(folder: Path, node: str, data: dict, job: str = "42") -> None:
    write_node_report(folder, data, {"SLURMD_NODENAME": node, "SLURM_JOB_ID": job, "SLURM_STEP_ID": "0",
                                     "SLURM_PROCID": "0", "CUDA_VISIBLE_DEVICES": "0,1"})


def merged(folder: Path, capsys, *args: str, env: dict | None = None) -> tuple[int, str, str]:
    code = main([str(folder), *args], env if env is not None else {"SLURM_JOB_NODELIST": NODES})
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_node_report_carries_its_slurm_identity(tmp_path):
    write(tmp_path, "node07", report())
    data = json.loads((tmp_path / "node07.json").read_text())
    assert (data["schema"], data["node"], data["job"], data["step"], data["procid"], data["cuda_visible_devices"]) \
        == (SCHEMA, "node07", "42", "0", "0", "0,1")
    assert data["gpus"] == [] and data["ok"] is True
    assert [p.name for p in tmp_path.iterdir()] == ["node07.json"]  # the temp file was renamed, not left


def test_all_expected_nodes_ready_exits_0_with_one_table(tmp_path, capsys):
    for n in ("node01", "node02", "node03", "node04"):
        write(tmp_path, n, report())
    code, out, _ = merged(tmp_path, capsys, "--json", str(tmp_path / "merged" / "fleet.json"))
    assert code == 0
    assert out.count("node    verdict  imagenet_val") == 1 and out.strip().endswith("4/4 nodes ready")
    assert json.loads((tmp_path / "merged" / "fleet.json").read_text())["ready"] == 4


def test_not_ready_and_silent_nodes_are_named_and_excluded(tmp_path, capsys):
    write(tmp_path, "node01", report())
    for n in ("node02", "node03", "node04"):
        write(tmp_path, n, MISSING_CACHE)
    (tmp_path / "node04.json").unlink()  # node04 wrote nothing
    code, out, _ = merged(tmp_path, capsys, "--expect", "node[01-05]")
    assert code == 1
    assert "node04  NO REPORT" in out and "node05  NO REPORT" in out
    # One fix for two nodes, printed once, with the nodes:
    assert out.count("python -m fetchers --imagenet-map") == 1
    assert "fix for node[02-03] (2 nodes): fetch it" in out
    assert "1/5 nodes ready — resubmit with --exclude=node[02-05]" in out
    assert "state=drain" not in out  # a missing cache or a silent node is no reason to drain


def test_min_ready_turns_k_ready_nodes_into_exit_0(tmp_path, capsys):
    for n in ("node01", "node02", "node03"):
        write(tmp_path, n, report())
    write(tmp_path, "node04", MISSING_CACHE)
    assert merged(tmp_path, capsys, "--min-ready", "3")[0] == 0
    assert merged(tmp_path, capsys, "--min-ready", "4")[0] == 1


def test_the_cause_of_no_report_comes_from_the_exit_record(tmp_path, capsys):
    write(tmp_path, "node01", report())
    for node, record in (("node02", {"timed_out": True, "limit_seconds": 30.0, "signal": "SIGTERM", "exit_code": -15}),
                         ("node03", {"timed_out": False, "signal": "SIGKILL", "exit_code": -9}),
                         ("node04", {"timed_out": False, "signal": None, "exit_code": 4})):
        (tmp_path / f"{node}.exit.json").write_text(json.dumps({"schema": SCHEMA, "node": node, **record}))
    code, out, _ = merged(tmp_path, capsys)
    assert code == 1
    assert "NO REPORT: timed out after 30.0 s" in out and "NO REPORT: killed by SIGKILL" in out
    assert "NO REPORT: exit code 4" in out
    assert 'nodename=node[02-03] state=drain reason="preflight: no report (' not in out  # two reasons: two lines
    assert 'nodename=node02 state=drain reason="preflight: no report (timed out after 30.0 s)"' in out


def test_a_stale_report_of_another_job_is_no_report(tmp_path, capsys):
    write(tmp_path, "node01", report(), job="41")
    code, out, _ = merged(tmp_path, capsys, "--expect", "node01", "--job", "42")
    assert code == 1 and "stale report from job 41, not job 42" in out


@pytest.mark.parametrize("plant, words", [
    (lambda d: (d / "node02.json").write_text('{"schema": "preflight-fleet-node/1", "node": "no'), "not whole JSON"),
    (lambda d: (d / "results.json").write_text('{"accuracy": 0.9}'), "is not a preflight node report"),
    (lambda d: (d / "notes.txt").write_bytes(b"\xff\xfe\x00"), "is not text"),
    (lambda d: os.mkfifo(d / "pipe.json"), "is not a regular file"),
], ids=["truncated", "foreign-json", "binary", "fifo"])
def test_a_file_that_is_not_a_node_report_means_no_verdict_naming_it(tmp_path, capsys, plant, words):
    write(tmp_path, "node01", report())
    plant(tmp_path)
    t0 = time.monotonic()
    code, out, err = merged(tmp_path, capsys)
    assert code == 2 and words in err and str(tmp_path) in err and out == ""
    assert time.monotonic() - t0 < 5  # the FIFO is never opened


def test_no_reports_no_folder_or_no_expected_nodes_means_no_verdict(tmp_path, capsys):
    assert merged(tmp_path, capsys) == (2, "", f"preflight fleet: NO VERDICT — no node reports in {tmp_path}: "
                                               f"did the tasks run with --fleet-dir={tmp_path}?\n")
    assert "cannot read the report folder" in merged(tmp_path / "absent", capsys)[2]
    write(tmp_path, "node01", report())
    code, _, err = merged(tmp_path, capsys, env={})
    assert code == 2 and "pass --expect HOSTLIST" in err


def test_control_bytes_in_a_report_are_not_printed(tmp_path, capsys):
    write(tmp_path, "node01", report(False, status="broken", problems=["bad \x1b[31mred\x07 file"], fix="x"))
    _, out, _ = merged(tmp_path, capsys, "--expect", "node01")
    assert "\x1b" not in out and "\x07" not in out and "bad \\x1b[31mred\\x07 file" in out  # escaped as everywhere


def test_node_args_replace_the_fleet_flags():
    assert node_args(["-m", "phase1", "--fleet", "--fleet-timeout", "9", "--fleet-dir=x", "--tiny",
                      "--report-json", "m.json"], Path("/d")) == ["-m", "phase1", "--tiny", "--fleet-dir=/d"]


@pytest.mark.parametrize("code, expect", [
    ("import time; time.sleep(60)", {"timed_out": True, "signal": "SIGTERM"}),
    ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", {"timed_out": False, "signal": "SIGKILL"}),
    ("raise SystemExit(3)", {"timed_out": False, "signal": None, "exit_code": 3}),
], ids=["hangs", "sigkill", "exit-3"])
def test_the_node_wrapper_records_how_the_task_ended(tmp_path, code, expect):
    t0 = time.monotonic()
    run_node(tmp_path, 2.0, [sys.executable, "-c", code], {"SLURMD_NODENAME": "node09"})
    assert time.monotonic() - t0 < 15
    record = json.loads((tmp_path / "node09.exit.json").read_text())
    assert {k: record[k] for k in expect} == expect
    assert (tmp_path / "logs" / "node09.log").is_file()


@pytest.mark.torch
def test_local_processes_with_simulated_slurm_variables(tmp_path):
    """Three nodes as three local processes (the same wrapper and pytest run srun would start); node02's
    environment points at a tiny world whose ImageNet val lost an image."""
    good, bad = tmp_path / "good", tmp_path / "bad"
    build_tiny_world(good)
    build_tiny_world(bad)
    victim = next(p for p in sorted((bad / "data" / "raw" / "imagenet_val").rglob("*.JPEG")))
    victim.unlink()
    folder = tmp_path / "reports"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFLIGHT_", "SLURM"))}
    env.update(PYTHONPATH=str(PROJECT), SLURM_JOB_ID="42", SLURM_JOB_NODELIST="node[01-03]")
    procs = []
    for i, node in enumerate(("node01", "node02", "node03")):
        world = bad if node == "node02" else good
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "checks.fleet_run", "--dir", str(folder), "--limit", "300", "--",
             sys.executable, "-m", "pytest", str(CHECKS), "-m", "phase1 and not gpu", "-p", "no:cacheprovider",
             "-p", "no:randomly", f"--fleet-dir={folder}"],
            cwd=PROJECT, env={**env, "SLURMD_NODENAME": node, "SLURM_PROCID": str(i), "SLURM_STEP_ID": "0",
                              "PREFLIGHT_TINY_WORLD": str(world), "PREFLIGHT_DEVICE": "cpu"}))
    assert [p.wait(timeout=400) for p in procs] == [0, 1, 0]
    out = subprocess.run([sys.executable, "-m", "checks.fleet", str(folder), "--json", str(tmp_path / "m.json")],
                         cwd=PROJECT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "node02  not ready  broken" in out.stdout
    assert "2/3 nodes ready — resubmit with --exclude=node02" in out.stdout
    merged = json.loads((tmp_path / "m.json").read_text())
    assert [n["state"] for n in merged["nodes"]] == ["ready", "not ready", "ready"]
    assert merged["nodes"][1]["assets"]["imagenet_val"] == "broken"


def test_fleet_outside_an_allocation_says_how_to_get_one(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFLIGHT_", "SLURM_"))}
    out = subprocess.run([sys.executable, "-m", "pytest", str(CHECKS), "-p", "no:cacheprovider", "--fleet"],
                         cwd=tmp_path, env={**env, "PYTHONPATH": str(PROJECT)}, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 4 and "--fleet runs inside a Slurm allocation: salloc -N 4" in out.stderr
    assert not list(tmp_path.iterdir())  # nothing launched, nothing written


def test_a_node_that_cannot_write_its_report_is_not_ready_and_says_why(tmp_path):
    (tmp_path / "a-file").write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFLIGHT_", "SLURM_"))}
    out = subprocess.run([sys.executable, "-m", "pytest", str(CHECKS), "-p", "no:cacheprovider", "-m", "env",
                          f"--fleet-dir={tmp_path / 'a-file' / 'reports'}"], cwd=PROJECT,
                         env={**env, "PYTHONPATH": str(PROJECT)}, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stdout
    assert "could not write this node's fleet report into" in out.stdout and "NOT READY" in out.stdout


def test_hostlists_expand_and_compress_as_slurm_writes_them(tmp_path, capsys):
    from checks.fleet import compress_hostlist, expand_hostlist

    assert expand_hostlist("node[01-03],gpu7") == ["node01", "node02", "node03", "gpu7"]
    assert compress_hostlist(["node18", "node17", "node03"]) == "node[03,17-18]"
    write(tmp_path, "node01", report())
    code, _, err = merged(tmp_path, capsys, "--expect", "node[01-")
    assert code == 2 and "cannot read the hostlist node[01-" in err
