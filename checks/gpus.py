"""Every visible GPU of this process, one sub-row each: a kernel, free memory, bf16, throughput, NVML health.

``observe_all`` gathers the facts per GPU (torch for what a run will use, NVML for what the driver
knows); ``classify_gpu`` turns one GPU's facts into a sub-row — a pure function, so every fault is
unit-tested without a GPU. NVML indexes are not CUDA indexes (CUDA_VISIBLE_DEVICES renumbers,
CUDA_DEVICE_ORDER reorders): the NVML device is found by UUID, else by PCI bus id.
What cannot be read (no NVML, no permission) is not-checked on that sub-row, never passed.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import asdict, dataclass, field

from preflight_core.findings import Status, shown

GiB = 1 << 30
SLOW_FACTOR = 0.8  # throughput below this fraction of the median is flagged

# NVML clock-event ("throttle") reason bits, as nvml.h defines them.
CLOCK_EVENT_PROBLEMS = {
    0x8: "HW slowdown",
    0x20: "SW thermal slowdown",
    0x40: "HW thermal slowdown",
    0x80: "HW power brake",
}
CLOCK_EVENT_BENIGN = {0x1: "idle", 0x2: "applications clocks setting", 0x4: "SW power cap", 0x10: "sync boost",
                      0x100: "display clock setting"}


@dataclass(frozen=True)
class NvmlFacts:
    """What NVML says about one GPU; None = could not be read (the reason is in ``errors``)."""

    ecc_uncorrected_volatile: int | None = None
    remapped_pending: bool | None = None
    remapped_failed: bool | None = None
    clock_event_reasons: int | None = None
    other_processes: tuple[tuple[int, int], ...] | None = None  # (pid, bytes) of processes that are not us
    own_pid_seen: bool | None = None  # False: NVML lists host pids (a container), ours among them unrecognised
    pcie_gen: int | None = None
    pcie_gen_max: int | None = None
    pcie_width: int | None = None
    pcie_width_max: int | None = None
    errors: tuple[str, ...] = ()  # what could not be read, and why


@dataclass(frozen=True)
class GpuFacts:
    """One visible GPU as this process sees it; ``index`` is the CUDA index."""

    index: int
    uuid: str | None = None
    pci_bus_id: str | None = None
    name: str | None = None
    kernel_ok: bool = False
    kernel_error: str | None = None
    free_bytes: int | None = None
    total_bytes: int | None = None
    bf16: bool | None = None
    tflops: float | None = None  # bf16 matmul throughput over about a second
    nvml: NvmlFacts = field(default_factory=NvmlFacts)


@dataclass
class GpuRow:
    """One GPU's sub-row of the gpu row (the JSON report's ``gpus`` entries)."""

    index: int
    uuid: str | None
    pci_bus_id: str | None
    name: str | None
    status: Status
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    not_checked: list[str] = field(default_factory=list)
    tflops: float | None = None

    def label(self) -> str:
        return f"GPU {self.index} {self.uuid or 'uuid ?'} bus {self.pci_bus_id or '?'}"

    def as_dict(self) -> dict:
        d = asdict(self)
        d["status"] = str(self.status)
        return d


def classify_gpu(g: GpuFacts, required_bytes: int = 0, median_tflops: float | None = None,
                 median_of: str = "this node") -> GpuRow:
    """The verdict on one GPU: broken on any fault, not-checked when something could not be read."""
    row = GpuRow(g.index, g.uuid, g.pci_bus_id, g.name, Status.READY, tflops=g.tflops)
    if g.kernel_error or not g.kernel_ok:
        row.problems.append(f"a matmul + synchronize failed: {g.kernel_error or 'wrong result'}")
    if required_bytes and g.free_bytes is not None and g.free_bytes < required_bytes:
        row.problems.append(f"{g.free_bytes / GiB:.1f} GiB free of {(g.total_bytes or 0) / GiB:.1f} GiB; the "
                            f"selected models need about {required_bytes / GiB:.1f} GiB")
    if g.bf16 is False:
        row.warnings.append("no native bf16")
    if g.tflops is not None and median_tflops and g.tflops < SLOW_FACTOR * median_tflops:
        row.problems.append(f"bf16 matmul at {g.tflops:.1f} TFLOP/s is {g.tflops / median_tflops:.0%} of the "
                            f"median of {median_of} ({median_tflops:.1f}); below {SLOW_FACTOR:.0%}")
    elif g.kernel_ok and g.bf16 and g.tflops is None:
        row.not_checked.append("throughput not measured")
    n = g.nvml
    if n.ecc_uncorrected_volatile:
        row.problems.append(f"{n.ecc_uncorrected_volatile} uncorrected ECC error(s) since the driver loaded")
    if n.remapped_pending:
        row.problems.append("remapped rows pending (needs a GPU reset)")
    if n.remapped_failed:
        row.problems.append("row remapping failed (the GPU needs service)")
    if n.clock_event_reasons is not None:
        bad = [what for bit, what in CLOCK_EVENT_PROBLEMS.items() if n.clock_event_reasons & bit]
        if bad:
            row.problems.append(f"clocks held down: {', '.join(bad)}")
    others = list(n.other_processes or ())
    if others and n.own_pid_seen is False:
        # This process holds a context on the GPU but NVML's pids are another namespace's: one of them is us.
        others.remove(min(others, key=lambda p: p[1]))
    if others:
        held = sum(b for _, b in others)
        pids = ", ".join(str(p) for p, _ in others[:5])
        guess = " (NVML shows another pid namespace's pids: the smallest holder is taken for this process)" \
            if n.own_pid_seen is False else ""
        row.problems.append(f"{len(others)} other process(es) hold {held / GiB:.1f} GiB (pid {pids}){guess}")
    if n.pcie_gen is not None and n.pcie_gen_max and n.pcie_width is not None and n.pcie_width_max and \
            (n.pcie_gen < n.pcie_gen_max or n.pcie_width < n.pcie_width_max):
        row.warnings.append(f"PCIe link gen{n.pcie_gen} x{n.pcie_width}, below its maximum "
                            f"gen{n.pcie_gen_max} x{n.pcie_width_max} (idle GPUs may downshift)")
    row.not_checked += [f"NVML: {e}" for e in n.errors]
    if row.problems:
        row.status = Status.BROKEN
    elif row.not_checked:
        row.status = Status.NOT_CHECKED
    return row


def classify_node(gpus: list[GpuFacts], required_bytes: int = 0) -> list[GpuRow]:
    """Each GPU against the node's median throughput (no peak table: GPUs of a node are alike)."""
    measured = [g.tflops for g in gpus if g.tflops]
    median = statistics.median(measured) if len(measured) >= 2 else None
    return [classify_gpu(g, required_bytes, median) for g in gpus]


def flag_slow_against_fleet(rows: list[dict], fleet_median: float) -> None:
    """The merge's second look: a GPU's sub-row (a report's dict) below 0.8x the fleet's median is broken."""
    for r in rows:
        t = r.get("tflops")
        if isinstance(t, (int, float)) and fleet_median and t < SLOW_FACTOR * fleet_median:
            r["problems"] = [*r.get("problems", []), f"bf16 matmul at {t:.1f} TFLOP/s is {t / fleet_median:.0%} "
                             f"of the fleet median ({fleet_median:.1f}); below {SLOW_FACTOR:.0%}"]
            r["status"] = str(Status.BROKEN)


# --------------------------------------------------------------------------- observing (needs a GPU)


def _bus_id(props) -> str | None:
    bus = getattr(props, "pci_bus_id", None)
    if bus is None:
        return None
    return f"{getattr(props, 'pci_domain_id', 0):08X}:{bus:02X}:{getattr(props, 'pci_device_id', 0):02X}.0"


def _throughput(torch, idx: int, seconds: float = 1.0, n: int = 4096) -> float:
    """bf16 matmul TFLOP/s over about ``seconds`` on GPU ``idx``."""
    dev = f"cuda:{idx}"
    a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    (a @ b).sum().item()  # warm-up: cuBLAS picks its kernel
    iters, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(10):
            a @ b
        torch.cuda.synchronize(idx)
        iters += 10
    return 2 * n ** 3 * iters / (time.perf_counter() - t0) / 1e12


def nvml_facts(pynvml, uuid: str | None, bus: str | None, on_gpu: bool = False) -> NvmlFacts:
    """NVML's readings for the GPU with this UUID (else bus id); ``on_gpu``: this process holds a context there."""
    errors: list[str] = []

    def read(what: str, fn, *args):
        try:
            return fn(*args)
        except pynvml.NVMLError as e:
            if "Not Supported" not in str(e):  # a consumer card has no ECC: nothing to check, nothing wrong
                errors.append(f"{what}: {e}")
            return None

    handle = None
    if uuid:
        handle = read("device by UUID", pynvml.nvmlDeviceGetHandleByUUID, uuid)
    if handle is None and bus:
        handle = read("device by PCI bus id", pynvml.nvmlDeviceGetHandleByPciBusId, bus)
    if handle is None:
        return NvmlFacts(errors=tuple(errors) or ("no NVML device matches this GPU's UUID or bus id",))
    errors.clear()  # a UUID NVML did not know, when the bus id found the device, is no gap in the checks
    ecc = read("uncorrected volatile ECC", pynvml.nvmlDeviceGetTotalEccErrors, handle,
               pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, pynvml.NVML_VOLATILE_ECC)
    remap = read("remapped rows", pynvml.nvmlDeviceGetRemappedRows, handle)  # (corr, uncorr, pending, failed)
    reasons = read("clock-event reasons", pynvml.nvmlDeviceGetCurrentClocksEventReasons, handle) \
        if hasattr(pynvml, "nvmlDeviceGetCurrentClocksEventReasons") else \
        read("clock-event reasons", pynvml.nvmlDeviceGetCurrentClocksThrottleReasons, handle)
    procs = read("processes on the GPU", pynvml.nvmlDeviceGetComputeRunningProcesses, handle)
    others = None if procs is None else tuple((p.pid, p.usedGpuMemory or 0) for p in procs if p.pid != os.getpid())
    own_seen = None if procs is None or not on_gpu else len(others) < len(procs)
    return NvmlFacts(
        ecc_uncorrected_volatile=ecc, remapped_pending=bool(remap[2]) if remap else None,
        remapped_failed=bool(remap[3]) if remap else None, clock_event_reasons=reasons, other_processes=others,
        own_pid_seen=own_seen,
        pcie_gen=read("PCIe generation", pynvml.nvmlDeviceGetCurrPcieLinkGeneration, handle),
        pcie_gen_max=read("PCIe max generation", pynvml.nvmlDeviceGetMaxPcieLinkGeneration, handle),
        pcie_width=read("PCIe width", pynvml.nvmlDeviceGetCurrPcieLinkWidth, handle),
        pcie_width_max=read("PCIe max width", pynvml.nvmlDeviceGetMaxPcieLinkWidth, handle),
        errors=tuple(errors))


def open_nvml():
    """(the initialised pynvml module, None), or (None, why NVML cannot be read here)."""
    try:
        import pynvml  # nvidia-ml-py

        pynvml.nvmlInit()
        return pynvml, None
    except Exception as e:  # ImportError, NVMLError (no driver library, no permission)
        return None, f"NVML unavailable: {type(e).__name__}: {e}"


def observe_all(device: str = "cuda", throughput_seconds: float = 1.0) -> list[GpuFacts]:
    """Facts of every GPU this process sees (``cuda``), or of one (``cuda:N``); [] when CUDA does not start."""
    import torch

    try:
        torch.cuda.init()
        count = torch.cuda.device_count()
    except Exception:
        return []  # the gpu row's own probe says why
    _, _, idx = device.partition(":")
    indexes = [int(idx)] if idx.isdigit() and int(idx) < count else range(count)
    pynvml, nvml_error = open_nvml()
    out = []
    for i in indexes:
        props = torch.cuda.get_device_properties(i)
        uuid = getattr(props, "uuid", None)
        uuid = None if uuid is None else (str(uuid) if str(uuid).startswith("GPU-") else f"GPU-{uuid}")
        facts = dict(index=i, uuid=uuid, pci_bus_id=_bus_id(props), name=props.name)
        try:
            a = torch.ones(256, 256, device=f"cuda:{i}")
            ok = float((a @ a).sum().item()) == 256.0 ** 3
            torch.cuda.synchronize(i)
            free, total = torch.cuda.mem_get_info(i)
            with torch.cuda.device(i):
                bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
            facts.update(kernel_ok=ok, free_bytes=free, total_bytes=total, bf16=bf16)
            if bf16 and throughput_seconds > 0:
                facts["tflops"] = _throughput(torch, i, throughput_seconds)
        except Exception as e:
            facts["kernel_error"] = f"{type(e).__name__}: {e}"
        on_gpu = "kernel_error" not in facts  # the kernel ran: this process holds a context on GPU i
        nvml = nvml_facts(pynvml, uuid, facts["pci_bus_id"], on_gpu) if pynvml else NvmlFacts(errors=(nvml_error,))
        out.append(GpuFacts(**facts, nvml=nvml))
    if pynvml:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass
    return out


def sub_row_text(g: dict) -> str:
    """One GPU's sub-row for a table, from its report dict: mark, identity, what is wrong."""
    mark = {str(Status.READY): "✓", str(Status.BROKEN): "✗"}.get(g.get("status"), "-")
    what = "; ".join([*g.get("problems", []), *(f"not checked: {m}" for m in g.get("not_checked", [])),
                      *(f"warning: {w}" for w in g.get("warnings", []))]) or "ok"
    speed = f", {g['tflops']:.1f} TFLOP/s" if isinstance(g.get("tflops"), (int, float)) else ""
    label = f"GPU {g.get('index')} {g.get('uuid') or 'uuid ?'} bus {g.get('pci_bus_id') or '?'}"
    return clean(f"{mark} {label}{speed}: {what}")


def clean(text: object) -> str:
    """Text read from a report file, safe to print: each line through the one escape (``shown``)."""
    return "\n".join(shown(line) for line in str(text).split("\n"))
