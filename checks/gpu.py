"""Is there a GPU that can run the experiments: a kernel runs, enough memory is free, bf16 is native.

``torch.cuda.is_available()`` says little: a wheel without kernels for the card's architecture, or
a driver too old for the wheel, only shows when a kernel runs. ``observe`` gathers the facts (the
only function that touches torch), ``classify`` turns them into a verdict: a pure function, so
every failure case is unit-tested on a machine without a GPU.
"""

from __future__ import annotations

import enum
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from preflight_core.findings import Finding, Fix
from preflight_core.registry import ModelFacts

GiB = 1 << 30
CUDA_CONTEXT_BYTES = 512 << 20  # CUDA context + cuBLAS/cuDNN workspaces, roughly
TORCH_INDEX = "https://download.pytorch.org/whl"


@dataclass(frozen=True)
class GpuObservation:
    """What torch says about the device; every field observable without interpretation."""

    device: str
    torch_version: str = ""
    cuda_build: str | None = None  # torch.version.cuda; None = CPU-only build
    cuda_visible_devices: str | None = None  # the env var as set, None = unset
    init_error: str | None = None  # torch.cuda.init() failure text
    device_count: int = 0
    arch_list: tuple[str, ...] = ()  # torch.cuda.get_arch_list()
    name: str | None = None
    capability: tuple[int, int] | None = None
    kernel_error: str | None = None  # matmul + synchronize failure text
    kernel_ok: bool = False  # the matmul ran and matched the CPU result
    kernel_seconds: float | None = None
    free_bytes: int | None = None
    total_bytes: int | None = None
    bf16: bool | None = None  # is_bf16_supported(including_emulation=False)


class GpuStatus(enum.StrEnum):
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"


class GpuCause(enum.StrEnum):
    """Why the GPU row says what it says: one keyword per cause."""

    OK = "ok"
    CPU_DEVICE = "cpu-device"
    CPU_ONLY_BUILD = "cpu-only-build"
    NO_DRIVER = "no-driver"
    DRIVER_TOO_OLD = "driver-too-old"
    NO_DEVICE_VISIBLE = "no-device-visible"
    BAD_DEVICE_INDEX = "bad-device-index"
    CUDA_INIT_FAILED = "cuda-init-failed"
    ARCH_MISSING = "arch-missing"
    KERNEL_FAILED = "kernel-failed"
    KERNEL_WRONG = "kernel-wrong"
    NOT_ENOUGH_MEMORY = "not-enough-memory"


@dataclass
class GpuReport:
    device: str
    status: GpuStatus
    cause: GpuCause
    problems: list[str] = field(default_factory=list)  # the findings' messages
    notes: list[str] = field(default_factory=list)
    observation: GpuObservation | None = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status is GpuStatus.OK

    def summary(self) -> str:
        o = self.observation
        if o is None or o.name is None:
            return f"{self.device}: {self.cause}"
        mem = f", {o.free_bytes / GiB:.1f} of {o.total_bytes / GiB:.1f} GiB free" if o.total_bytes else ""
        cc = f" (sm_{o.capability[0]}{o.capability[1]})" if o.capability else ""
        bf16 = {True: "yes", False: "no", None: "?"}[o.bf16]
        return f"{o.name}{cc}{mem}, bf16 {bf16}, torch {o.torch_version} (CUDA {o.cuda_build})"


def _device_index(device: str) -> int:
    _, _, idx = device.partition(":")
    return int(idx) if idx.isdigit() else 0


def observe(device: str = "cuda") -> GpuObservation:
    """Ask torch, run a small matmul on ``device`` and synchronize; never raises for CUDA trouble."""
    import torch

    base = dict(device=device, torch_version=torch.__version__, cuda_build=torch.version.cuda,
                cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"))
    if not device.startswith("cuda") or torch.version.cuda is None:
        return GpuObservation(**base)
    try:
        torch.cuda.init()
    except Exception as e:  # torch raises RuntimeError/AssertionError with the driver's words
        return GpuObservation(**base, init_error=str(e))
    count = torch.cuda.device_count()
    base.update(device_count=count, arch_list=tuple(torch.cuda.get_arch_list()))
    idx = _device_index(device)
    if idx >= count:
        return GpuObservation(**base)
    base.update(name=torch.cuda.get_device_name(idx), capability=tuple(torch.cuda.get_device_capability(idx)))
    try:
        gen = torch.Generator().manual_seed(0)
        a = torch.randn(256, 256, generator=gen)
        t0 = time.perf_counter()
        got = (a.to(device) @ a.to(device).T).sum(dim=1)
        torch.cuda.synchronize(idx)
        base["kernel_seconds"] = time.perf_counter() - t0
        base["kernel_ok"] = bool(torch.allclose(got.cpu(), (a @ a.T).sum(dim=1), rtol=1e-3, atol=1e-2))
    except Exception as e:
        base["kernel_error"] = str(e)
        return GpuObservation(**base)
    try:
        free, total = torch.cuda.mem_get_info(idx)
        with torch.cuda.device(idx):
            bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
        base.update(free_bytes=free, total_bytes=total, bf16=bf16)
    except Exception as e:
        base["kernel_error"] = f"after the matmul ran: {e}"
    return GpuObservation(**base)


def arch_supported(capability: tuple[int, int], arch_list: Iterable[str]) -> bool:
    """Does the wheel hold code the card can run: SASS of the same major and lower-or-equal minor
    (sm_80 runs on sm_86), or PTX (compute_XY) of a lower-or-equal architecture, which the driver JITs."""
    for arch in arch_list:
        m = re.fullmatch(r"(sm|compute)_(\d+)(\d)([af]?)", arch)
        if not m:
            continue
        kind, major, minor, suffix = m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)
        if suffix == "a":  # arch-specific code runs on exactly that architecture
            if (major, minor) == capability:
                return True
        elif kind == "sm" and major == capability[0] and minor <= capability[1]:
            return True
        elif kind == "compute" and (major, minor) <= capability:
            return True
    return False


WHEEL_HINT = (f"pip install --force-reinstall torch torchvision --index-url {TORCH_INDEX}/cuXYZ "
              "(XYZ no newer than the 'CUDA Version' nvidia-smi shows, e.g. cu126)")


def classify(o: GpuObservation, required_bytes: int = 0) -> GpuReport:
    """The verdict on an observation: status, a cause keyword, and problems in checklist shape."""
    if not o.device.startswith("cuda"):
        return GpuReport(o.device, GpuStatus.SKIPPED, GpuCause.CPU_DEVICE, notes=[f"device is {o.device!r}: GPU checks skipped"],
                         observation=o)
    return _setup_failure(o) or _kernel_failure(o) or _ready(o, required_bytes)


def _failed(o: GpuObservation, cause: GpuCause, what: str, fix: str) -> GpuReport:
    finding = Finding(what, fix=Fix(fix))
    return GpuReport(o.device, GpuStatus.FAILED, cause, [finding.message()], observation=o, findings=[finding])


def _visible(o: GpuObservation) -> str:
    return f"CUDA_VISIBLE_DEVICES={o.cuda_visible_devices!r}" if o.cuda_visible_devices is not None else \
        "CUDA_VISIBLE_DEVICES unset"


def _arch(o: GpuObservation) -> str:
    return f"sm_{o.capability[0]}{o.capability[1]}" if o.capability else "?"


def _setup_failure(o: GpuObservation) -> GpuReport | None:
    """Why torch cannot reach the requested GPU at all (CPU build, driver, visibility, index); None if it can."""
    cvd = _visible(o)
    if o.cuda_build is None:
        return _failed(o, GpuCause.CPU_ONLY_BUILD,
                       f"torch {o.torch_version} is a CPU-only build (torch.version.cuda is None)",
                       f"install a CUDA build that your driver supports (see nvidia-smi): {WHEEL_HINT}")
    if o.init_error is not None or o.device_count == 0:
        return _init_failure(o, cvd)
    if _device_index(o.device) >= o.device_count:
        return _failed(o, GpuCause.BAD_DEVICE_INDEX,
                       f"{o.device} does not exist: {o.device_count} GPU(s) visible ({cvd})",
                       f"use --device cuda:0 … cuda:{o.device_count - 1}")
    return None


def _init_failure(o: GpuObservation, cvd: str) -> GpuReport:
    """CUDA did not initialise or sees no device: which of driver, visibility or the GPU itself is to blame."""
    err = (o.init_error or "").lower()
    said = f"torch says: {o.init_error}" if o.init_error else "torch.cuda.device_count() is 0"
    if "too old" in err or "insufficient" in err or "unsupported display driver" in err:
        return _failed(o, GpuCause.DRIVER_TOO_OLD, f"the NVIDIA driver is too old for torch {o.torch_version} "
                       f"(built for CUDA {o.cuda_build}); {said}",
                       "update the NVIDIA driver, or install a torch build for the CUDA version nvidia-smi "
                       f"reports: {WHEEL_HINT}")
    if "no nvidia driver" in err or "driver not loaded" in err or "libcuda" in err:
        return _failed(o, GpuCause.NO_DRIVER, f"no NVIDIA driver on this machine; {said}",
                       "run on a GPU node (check nvidia-smi), or pass --device cpu to skip GPU checks")
    if o.cuda_visible_devices is not None and o.cuda_visible_devices.strip() in ("", "-1", "none", "NoDevFiles"):
        return _failed(o, GpuCause.NO_DEVICE_VISIBLE, f"no GPU visible: {cvd} hides every device; {said}",
                       "unset CUDA_VISIBLE_DEVICES or set it to a GPU index (nvidia-smi -L)")
    if o.init_error is None or "no cuda gpus" in err:
        return _failed(o, GpuCause.NO_DEVICE_VISIBLE, f"the driver sees no GPU ({cvd}); {said}",
                       "check nvidia-smi -L and CUDA_VISIBLE_DEVICES; on a cluster, request a GPU")
    return _failed(o, GpuCause.CUDA_INIT_FAILED, f"CUDA failed to initialise; {said}",
                   "check nvidia-smi and dmesg for Xid errors; reinstall torch if the driver looks fine")


def _kernel_failure(o: GpuObservation) -> GpuReport | None:
    """Why a matmul on the GPU failed or gave a wrong result (missing arch, kernel error); None if it was right."""
    cc = _arch(o)
    no_image = "no kernel image" in (o.kernel_error or "").lower()
    if no_image or (o.capability and o.arch_list and not arch_supported(o.capability, o.arch_list)):
        return _failed(o, GpuCause.ARCH_MISSING, f"{o.name} is {cc} but torch {o.torch_version} has kernels for "
                       f"{', '.join(o.arch_list) or 'nothing'} only"
                       + (f"; the kernel failed: {o.kernel_error}" if o.kernel_error else ""),
                       f"install a torch build that includes {cc} (a newer wheel or another CUDA index): "
                       f"{WHEEL_HINT}")
    if o.kernel_error:
        return _failed(o, GpuCause.KERNEL_FAILED, f"a matmul on {o.device} ({o.name}) failed: {o.kernel_error}",
                       "check nvidia-smi (ECC/Xid errors, another process, MIG mode) and retry")
    if not o.kernel_ok:
        return _failed(o, GpuCause.KERNEL_WRONG,
                       f"a matmul on {o.device} ({o.name}) gave a different result than on the CPU",
                       "the GPU or driver is faulty: check nvidia-smi -q for ECC errors, try another GPU")
    return None


def _ready(o: GpuObservation, required_bytes: int) -> GpuReport:
    """The GPU works: OK, with a note on bf16, unless it lacks the free memory the selected models need."""
    report = GpuReport(o.device, GpuStatus.OK, GpuCause.OK, observation=o)
    if o.bf16 is False:
        report.notes.append(f"{o.name} ({_arch(o)}) has no native bf16: use fp16 or fp32")
    if required_bytes and o.free_bytes is not None and o.free_bytes < required_bytes:
        report.status, report.cause = GpuStatus.FAILED, GpuCause.NOT_ENOUGH_MEMORY
        finding = Finding(
            f"not enough free GPU memory: {o.free_bytes / GiB:.1f} GiB free of {o.total_bytes / GiB:.1f} GiB on "
            f"{o.name}, the selected models need about {required_bytes / GiB:.1f} GiB", where=o.device,
            fix=Fix("free the GPU (nvidia-smi shows who holds it), or select fewer models with -m"))
        report.problems.append(finding.message())
        report.findings.append(finding)
    return report


def required_free_bytes(models: Iterable[ModelFacts]) -> int:
    """Free memory the selected models need on the GPU: all their weights (the checks keep every
    model loaded), a quarter of the largest for activations, and the CUDA context."""
    sizes = [m.approx_weight_bytes for m in models]
    if not sizes:
        return 0
    return sum(sizes) + max(sizes) // 4 + CUDA_CONTEXT_BYTES


def probe_gpu(device: str = "cuda", required_bytes: int = 0) -> GpuReport:
    """Observe ``device`` and classify it (see ``classify``)."""
    return classify(observe(device), required_bytes)
