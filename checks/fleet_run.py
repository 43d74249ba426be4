"""``pytest --fleet``: the same pytest selection on every node of the allocation, through Slurm's srun.

The launcher (inside ``salloc`` / ``sbatch``) runs ``srun --ntasks-per-node=1 --kill-on-bad-exit=0
python -m checks.fleet_run --dir DIR --limit S -- pytest … --fleet-dir=DIR``; on each node this
wrapper runs pytest with a time limit, its output going to ``DIR/logs/<node>.log``, and records how
it ended (``DIR/<node>.exit.json``: exit code, signal, timeout), so a node that writes no report is
named with its cause. Then the launcher merges (``checks.fleet``) and prints the one table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from checks.fleet import (
    EXIT_SUFFIX,
    LOG_DIR,
    SCHEMA,
    NoVerdict,
    atomic_write_json,
    expected_nodes,
    merge,
    node_identity,
)
from checks.session import resolve_settings

GRACE_SECONDS = 5  # between SIGTERM and SIGKILL for a node that ran past its limit
FLEET_FLAGS = ("--fleet", "--fleet-dir", "--fleet-timeout", "--report-json")  # the launcher's, not the nodes'


def node_args(args: list[str], folder: Path) -> list[str]:
    """The user's pytest arguments for one node: the --fleet* ones replaced by --fleet-dir=FOLDER; --report-json
    is the merged table's (every node writing one shared path would clobber it)."""
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a in FLEET_FLAGS[1:]:
            skip = True
        elif not a.startswith(FLEET_FLAGS):
            out.append(a)
    return [*out, f"--fleet-dir={folder}"]


def default_folder(environ=os.environ) -> Path:
    base = Path(environ.get("SLURM_SUBMIT_DIR") or os.getcwd())
    return base / "preflight-fleet" / f"{environ.get('SLURM_JOB_ID', 'nojob')}-{time.strftime('%Y%m%d-%H%M%S')}"


def launch_if_fleet(config: pytest.Config) -> int | None:
    """Under --fleet: run every node through srun, merge, print the table; the merge's exit code."""
    settings = resolve_settings(config)  # before pytest_configure: the same precedence chain, resolved early
    if not settings["fleet"].value:
        return None
    if not os.environ.get("SLURM_JOB_ID"):
        raise pytest.UsageError("--fleet runs inside a Slurm allocation: salloc -N 4 --gres=gpu:8 pytest -m phase1 "
                                "--fleet (or in an sbatch script)")
    if not shutil.which("srun"):
        raise pytest.UsageError("--fleet needs Slurm's srun on PATH")
    folder = (settings["fleet-dir"].value or default_folder()).resolve()
    limit = float(settings["fleet-timeout"].value)
    folder.mkdir(parents=True, exist_ok=True)
    nodes = os.environ.get("SLURM_JOB_NUM_NODES") or os.environ.get("SLURM_NNODES")
    # One task per node, whatever -n the allocation was made with (srun would inherit SLURM_NTASKS).
    count = [f"--nodes={nodes}", f"--ntasks={nodes}"] if nodes else []
    argv = ["srun", *count, "--ntasks-per-node=1", "--kill-on-bad-exit=0", sys.executable, "-m", "checks.fleet_run",
            "--dir", str(folder), "--limit", str(limit), "--", sys.executable, "-m", "pytest",
            *node_args(list(config.invocation_params.args), folder)]
    env = {**os.environ, "PREFLIGHT_FLEET": "0"}  # the nodes check themselves; they do not launch again
    print(f"preflight fleet: srun on {os.environ.get('SLURM_JOB_NODELIST', '?')}, {limit:g} s per node, "
          f"reports in {folder}", flush=True)
    try:
        srun = subprocess.Popen(argv, env=env, cwd=config.invocation_params.dir, start_new_session=True)
    except OSError as e:
        raise pytest.UsageError(f"could not start srun: {e}") from None
    try:
        srun.wait(timeout=limit + 4 * GRACE_SECONDS + 60)  # the wrappers stop their nodes; this bounds srun
    except subprocess.TimeoutExpired:
        _stop(srun)
    except KeyboardInterrupt:
        _stop(srun)
        raise
    try:
        verdict = merge(folder, expected_nodes(None), os.environ.get("SLURM_JOB_ID"))
    except NoVerdict as e:
        print(f"preflight fleet: NO VERDICT — {e}", flush=True)
        return 2
    print("\n".join(verdict.lines()), flush=True)
    merged = settings["report-json"].value
    atomic_write_json(Path(config.invocation_params.dir, merged) if merged else folder / ".merged.json",
                      verdict.as_dict())
    return verdict.exit_code


def _stop(proc: subprocess.Popen) -> int:
    """SIGTERM the process group, SIGKILL it after the grace period; the exit status."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            return proc.wait(timeout=GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            continue
    return proc.wait()


def run_node(folder: Path, limit: float, command: list[str], environ=os.environ) -> int:
    """Run one node's checks with a time limit, and record how they ended."""
    node = node_identity(environ)["node"]
    (folder / LOG_DIR).mkdir(parents=True, exist_ok=True)
    record = {"schema": SCHEMA, **node_identity(environ), "limit_seconds": limit, "timed_out": False,
              "signal": None, "exit_code": None}
    t0 = time.monotonic()
    with open(folder / LOG_DIR / f"{node}.log", "w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            record["timed_out"] = True
            code = _stop(proc)
    record["seconds"] = round(time.monotonic() - t0, 1)
    if code < 0:
        record["signal"] = signal.Signals(-code).name
    record["exit_code"] = code
    atomic_write_json(folder / f"{node}{EXIT_SUFFIX}", record)
    return 124 if record["timed_out"] else (128 - code if code < 0 else code)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m checks.fleet_run", description="one node's task under --fleet")
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--limit", type=float, required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    return run_node(args.dir, args.limit, command)


if __name__ == "__main__":
    sys.exit(main())
