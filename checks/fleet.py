"""The fleet verdict: one report per node of a Slurm allocation, merged into one nodes x assets table.

Each node's pytest run (``--fleet-dir=DIR``) writes ``DIR/<node>.json``: the readiness report plus
its Slurm identity. ``python -m checks.fleet DIR [--expect HOSTLIST] [--min-ready K] [--json PATH]``
merges them against the nodes that were expected (``--expect``, else ``SLURM_JOB_NODELIST``), never
against whichever files happen to exist: a node that wrote nothing is a NO REPORT row with its cause.
Exit 0: every expected node is ready (or at least K with ``--min-ready``); 1: some node is not ready
or silent; 2: no verdict (no reports, an unreadable folder, a file that is not a node report).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import stat
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from checks.gpus import clean, flag_slow_against_fleet, sub_row_text
from preflight_core.findings import Status, shown

SCHEMA = "preflight-fleet-node/1"
EXIT_SUFFIX = ".exit.json"  # written by the node wrapper (checks.fleet_run) next to the report
LOG_DIR = "logs"
MAX_REPORT_BYTES = 16 << 20


class NoVerdict(Exception):
    """No verdict is possible (exit 2); the message names the file or folder and the fix."""


# --------------------------------------------------------------------------- hostlists


def _python_hostlist():
    """The python-hostlist module, or None (the PyPI package named ``hostlist`` is another one)."""
    try:
        import hostlist
    except ImportError:
        return None
    return hostlist if hasattr(hostlist, "expand_hostlist") and hasattr(hostlist, "collect_hostlist") else None


def expand_hostlist(hostlist: str) -> list[str]:
    """``node[01-03],gpu7`` -> its names: python-hostlist, else ``scontrol show hostnames``."""
    module = _python_hostlist()
    if module is None:
        return _scontrol("hostnames", hostlist).split()
    try:
        return module.expand_hostlist(hostlist)
    except Exception as e:  # python-hostlist's BadHostlist
        raise NoVerdict(f"cannot read the hostlist {clean(hostlist)}: {e}") from None


def compress_hostlist(names: list[str]) -> str:
    """The names as one hostlist (``node[17-18]``), the form ``--exclude`` takes."""
    module = _python_hostlist()
    if module is not None:
        return module.collect_hostlist(names)
    return _scontrol("hostlist", ",".join(names)).strip() if shutil.which("scontrol") else ",".join(names)


def _scontrol(verb: str, arg: str) -> str:
    if not shutil.which("scontrol"):
        raise NoVerdict("cannot expand a hostlist: neither python-hostlist (pip install python-hostlist) "
                        "nor Slurm's scontrol is installed")
    out = subprocess.run(["scontrol", "show", verb, arg], capture_output=True, text=True, timeout=30)
    if out.returncode:
        raise NoVerdict(f"scontrol show {verb} {clean(arg)} failed: {clean(out.stderr.strip())}")
    return out.stdout


# --------------------------------------------------------------------------- the node's side


def node_identity(environ=os.environ) -> dict:
    """Who wrote a report: the Slurm node name (what --exclude takes), job, step, task, visible GPUs."""
    return {
        "node": environ.get("SLURMD_NODENAME") or socket.gethostname().split(".")[0],
        "job": environ.get("SLURM_JOB_ID"),
        "step": environ.get("SLURM_STEP_ID"),
        "procid": environ.get("SLURM_PROCID"),
        "cuda_visible_devices": environ.get("CUDA_VISIBLE_DEVICES"),
    }


def atomic_write_json(path: Path, data: dict) -> None:
    """Write to a temp name in the same folder, then rename: a reader sees all of it or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_node_report(folder: Path, report: dict, environ=os.environ) -> Path:
    """This node's readiness report plus identity and per-GPU sub-rows, as ``folder/<node>.json``."""
    identity = node_identity(environ)
    gpu_row = next((a for a in report.get("assets", []) if a.get("name") == "gpu"), {})
    data = {"schema": SCHEMA, **identity, "gpus": gpu_row.get("gpus", []), **report}
    path = Path(folder) / f"{identity['node']}.json"
    atomic_write_json(path, data)
    return path


def save_node_report(folder: Path, report: dict) -> str | None:
    """``write_node_report``, or why it could not be written (a run-wide problem of that node's run)."""
    try:
        write_node_report(folder, report)
    except OSError as e:
        return f"could not write this node's fleet report into {folder}: {e.strerror or e}"
    return None


# --------------------------------------------------------------------------- reading a folder


def read_folder(folder: Path) -> tuple[dict[str, dict], dict[str, dict]]:
    """(node -> report, node -> exit record); NoVerdict for anything that is not ours or not whole."""
    folder = Path(folder)
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as e:
        raise NoVerdict(f"cannot read the report folder {shown(str(folder))}: {e.strerror or e} (is it the folder "
                        "the nodes wrote with --fleet-dir, and shared with this node?)") from None
    reports: dict[str, dict] = {}
    exits: dict[str, dict] = {}
    for entry in entries:
        if entry.name.startswith(".") or (entry.name == LOG_DIR and entry.is_dir(follow_symlinks=False)):
            continue  # temp files of a write in progress, the tasks' logs
        path = folder / entry.name
        data = _read_json(path)
        is_exit = entry.name.endswith(EXIT_SUFFIX)
        if not isinstance(data, dict) or data.get("schema") != SCHEMA or not isinstance(data.get("node"), str) \
                or (not is_exit and not isinstance(data.get("assets"), list)):
            raise NoVerdict(f"{path} is not a preflight node report (schema {SCHEMA}): move it out of {folder}, "
                            "or merge a folder that holds only node reports")
        (exits if is_exit else reports)[data["node"]] = data
    return reports, exits


def _read_json(path: Path):
    try:
        st = path.lstat()
        if not stat.S_ISREG(st.st_mode):  # a FIFO would block the read, a link could point anywhere
            raise NoVerdict(f"{path} is not a regular file: move it out of {path.parent}")
        if st.st_size > MAX_REPORT_BYTES:
            raise NoVerdict(f"{path} is {st.st_size:,} bytes, too large for a node report: move it out of {path.parent}")
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise NoVerdict(f"cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise NoVerdict(f"{path} is not text (not a node report): move it out of {path.parent}") from None
    try:
        return json.loads(text)
    except ValueError as e:
        raise NoVerdict(f"{path} is not whole JSON ({e.msg} at line {e.lineno}): truncated or foreign; "
                        f"move it out of {path.parent} and rerun that node") from None


# --------------------------------------------------------------------------- the merge


@dataclass
class NodeRow:
    node: str
    state: str  # "ready" | "not ready" | "NO REPORT"
    cause: str = ""
    assets: dict[str, str] = field(default_factory=dict)  # asset -> status
    problems: list[str] = field(default_factory=list)
    gpus: list[dict] = field(default_factory=list)
    exit: dict | None = None

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    def gpu_cell(self) -> str:
        if not self.gpus:
            return "-"
        good = sum(1 for g in self.gpus if g.get("status") == str(Status.READY))
        return f"{good}/{len(self.gpus)}"

    def bad_gpus(self) -> list[dict]:
        return [g for g in self.gpus if g.get("status") != str(Status.READY)]

    def as_dict(self) -> dict:
        return {"node": self.node, "state": self.state, "cause": self.cause, "assets": self.assets,
                "problems": self.problems, "gpus": self.gpus, "exit": self.exit}


@dataclass
class FleetVerdict:
    folder: Path
    rows: list[NodeRow]
    fixes: list[tuple[str, list[str], list[str]]]  # (fix text, commands, nodes)
    min_ready: int | None = None
    unexpected: list[str] = field(default_factory=list)  # reports from nodes nobody expected

    @property
    def ready(self) -> list[str]:
        return [r.node for r in self.rows if r.ready]

    @property
    def not_ready(self) -> list[str]:
        return [r.node for r in self.rows if not r.ready]

    @property
    def exit_code(self) -> int:
        if not self.not_ready:
            return 0
        return 0 if self.min_ready is not None and len(self.ready) >= self.min_ready else 1

    def summary(self) -> str:
        n, ok = len(self.rows), len(self.ready)
        if not self.not_ready:
            return f"{ok}/{n} nodes ready"
        tail = f" (--min-ready {self.min_ready} met)" if self.exit_code == 0 else ""
        return f"{ok}/{n} nodes ready — resubmit with --exclude={compress_hostlist(self.not_ready)}{tail}"

    def drain_lines(self) -> list[str]:
        """For admins: nodes whose hardware or whose run failed (a user cannot drain; a missing cache is no drain)."""
        by_reason: dict[str, list[str]] = {}
        for r in self.rows:
            if r.state == "NO REPORT" and r.exit and (r.exit.get("timed_out") or r.exit.get("signal")):
                reason = f"no report ({r.cause})"
            elif r.bad_gpus():
                reason = "; ".join(f"GPU {g.get('index')} {g.get('uuid') or ''}: {(g.get('problems') or ['?'])[0]}"
                                   for g in r.bad_gpus()[:2])
            else:
                continue
            by_reason.setdefault(reason.replace('"', "'")[:200], []).append(r.node)
        return [f'scontrol update nodename={compress_hostlist(nodes)} state=drain reason="preflight: {reason}"'
                for reason, nodes in by_reason.items()]

    def lines(self) -> list[str]:
        assets = list(dict.fromkeys(a for r in self.rows for a in r.assets))
        head = ["node", "verdict", *assets, "gpus"]
        cells = [[r.node, r.state,
                  *(r.assets.get(a, "-") for a in assets), r.gpu_cell()] for r in self.rows]
        widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(head)]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        out = [f"preflight fleet: {len(self.rows)} node(s) expected, reports in {self.folder}",
               fmt.format(*head).rstrip(), fmt.format(*("-" * w for w in widths)).rstrip()]
        for row, cell in zip(self.rows, cells):
            out.append(fmt.format(*cell).rstrip())
            out += [f"    ✗ {p}" for p in row.problems[:4]]
            out += [f"    {sub_row_text(g)}" for g in row.bad_gpus()]
        if self.unexpected:
            out.append(f"! reports from nodes not expected (ignored): {compress_hostlist(self.unexpected)}")
        for text, commands, nodes in self.fixes:
            out.append(f"fix for {compress_hostlist(nodes)} ({len(nodes)} node{'s' * (len(nodes) > 1)}): {text}")
            out += [f"    {c}" for c in commands]
        out.append(self.summary())
        drains = self.drain_lines()
        if drains:
            out.append("for admins (users cannot drain):")
            out += [f"    {d}" for d in drains]
        return out

    def as_dict(self) -> dict:
        return {"ok": self.exit_code == 0 and not self.not_ready, "exit_code": self.exit_code,
                "ready": len(self.ready), "expected": len(self.rows), "summary": self.summary(),
                "exclude": compress_hostlist(self.not_ready) if self.not_ready else "",
                "nodes": [r.as_dict() for r in self.rows],
                "fixes": [{"fix": t, "fix_commands": c, "nodes": n} for t, c, n in self.fixes],
                "drain": self.drain_lines(), "unexpected": self.unexpected}


def _no_report_cause(record: dict | None) -> str:
    if record is None:
        return "no report, no exit record: the task never started, or was killed with its wrapper"
    if record.get("timed_out"):
        return f"timed out after {record.get('limit_seconds', '?')} s"
    if record.get("signal"):
        return f"killed by {clean(record['signal'])}"
    return f"exit code {record.get('exit_code')}"


def _node_row(node: str, report: dict | None, record: dict | None, job: str | None) -> NodeRow:
    if report is None:
        cause = _no_report_cause(record)
        return NodeRow(node, "NO REPORT", cause, problems=[f"NO REPORT: {cause}"], exit=record)
    if job and report.get("job") not in (None, job):
        cause = f"stale report from job {clean(report.get('job'))}, not job {job}"
        return NodeRow(node, "NO REPORT", cause, problems=[f"NO REPORT: {cause}"], exit=record)
    assets = {clean(a.get("name")): clean(a.get("status")) for a in report["assets"] if isinstance(a, dict)}
    problems = [clean(p) for p in report.get("problems", [])]
    for a in report["assets"]:
        if isinstance(a, dict) and a.get("status") in ("missing", "broken") and a.get("name") != "gpu":
            problems += [f"{clean(a.get('name'))}: {clean(p).splitlines()[0]}" for p in a.get("problems", [])[:1]]
    gpus = [g for g in report.get("gpus") or [] if isinstance(g, dict)]
    ok = report.get("ok") is True and report.get("complete") is not False
    row = NodeRow(node, "ready" if ok else "not ready", assets=assets, problems=problems, gpus=gpus, exit=record)
    if ok and row.bad_gpus():
        row.state = "not ready"
    if not ok and not problems and not row.bad_gpus():
        row.problems.append(clean(report.get("verdict") or "the node's report says not ok"))
    return row


def merge(folder: Path, expected: list[str], job: str | None = None, min_ready: int | None = None) -> FleetVerdict:
    reports, exits = read_folder(folder)
    if not reports and not exits:
        raise NoVerdict(f"no node reports in {folder}: did the tasks run with --fleet-dir={folder}?")
    fleet = [g for r in reports.values() for g in r.get("gpus") or []
             if isinstance(g, dict) and isinstance(g.get("tflops"), (int, float))]
    if len({id(r) for r in reports.values() if r.get("gpus")}) >= 2 and len(fleet) >= 2:
        flag_slow_against_fleet(fleet, statistics.median(g["tflops"] for g in fleet))
    rows = [_node_row(n, reports.get(n), exits.get(n), job) for n in expected]
    fixes: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for n in expected:
        for a in (reports.get(n) or {}).get("assets", []):
            if isinstance(a, dict) and a.get("status") in ("missing", "broken", "not-checked") and a.get("fix"):
                nodes = fixes.setdefault((clean(a["fix"]), tuple(clean(c) for c in a.get("fix_commands", []))), [])
                if n not in nodes:
                    nodes.append(n)
    return FleetVerdict(Path(folder), rows, [(t, list(c), n) for (t, c), n in fixes.items()], min_ready,
                        sorted(set(reports) - set(expected)))


def expected_nodes(expect: str | None, environ=os.environ) -> list[str]:
    hostlist = expect or environ.get("SLURM_JOB_NODELIST")
    if not hostlist:
        raise NoVerdict("which nodes should have reported? pass --expect HOSTLIST (e.g. node[01-16]), "
                        "or run inside the allocation (SLURM_JOB_NODELIST)")
    nodes = expand_hostlist(hostlist)
    if not nodes:
        raise NoVerdict(f"the hostlist {clean(hostlist)} names no node")
    return nodes


def main(argv: list[str] | None = None, environ=os.environ) -> int:
    parser = argparse.ArgumentParser(prog="python -m checks.fleet", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="the folder the nodes wrote their reports to (--fleet-dir)")
    parser.add_argument("--expect", help="the nodes that should have reported, a Slurm hostlist such as 'node[01-16]' "
                        "(default: $SLURM_JOB_NODELIST)")
    parser.add_argument("--min-ready", type=int, help="exit 0 when at least this many nodes are ready")
    parser.add_argument("--json", type=Path, help="also write the merged table as JSON to this path")
    parser.add_argument("--job", default=environ.get("SLURM_JOB_ID"),
                        help="reports of another job are stale (default: $SLURM_JOB_ID)")
    args = parser.parse_args(argv)
    try:
        verdict = merge(args.folder, expected_nodes(args.expect, environ), args.job, args.min_ready)
    except NoVerdict as e:
        print(f"preflight fleet: NO VERDICT — {e}", file=sys.stderr)
        if args.json:
            atomic_write_json(args.json, {"ok": False, "exit_code": 2, "no_verdict": str(e)})
        return 2
    print("\n".join(verdict.lines()), flush=True)
    if args.json:
        atomic_write_json(args.json, verdict.as_dict())
    return verdict.exit_code


if __name__ == "__main__":
    sys.exit(main())
