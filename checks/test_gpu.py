"""The GPU: a kernel runs and synchronises, enough memory is free for the selected models."""

import pytest

from checks.gpu import GpuCause
from preflight_core.findings import Status

pytestmark = pytest.mark.asset("gpu")


@pytest.fixture
def gpu(asset, checkup):
    if checkup.device == "cpu":
        implied = checkup.settings["device"].source == "--tiny"
        asset.skip(Status.NOT_REQUESTED, "--tiny runs on the CPU" if implied else "--device cpu")
    return checkup.gpu_report


def test_cuda_kernel_runs(gpu, asset):
    if gpu.cause not in (GpuCause.OK, GpuCause.NOT_ENOUGH_MEMORY):
        asset.fail("\n".join(f.problem() for f in gpu.findings), gpu.findings[0].the_fix)
    asset.info(gpu.summary())
    for note in gpu.notes:
        asset.info(note)


def test_enough_free_memory_for_the_selected_models(gpu, asset):
    if gpu.cause not in (GpuCause.OK, GpuCause.NOT_ENOUGH_MEMORY):
        asset.skip(Status.NOT_CHECKED, f"no working GPU ({gpu.cause}) to measure free memory")
    if gpu.cause is GpuCause.NOT_ENOUGH_MEMORY:
        asset.fail("\n".join(f.problem() for f in gpu.findings), gpu.findings[0].the_fix)


def test_every_visible_gpu(gpu, asset, checkup):
    """One sub-row per visible GPU (index, UUID, bus): kernel, memory, bf16, throughput, NVML health."""
    from checks.gpus import classify_node, observe_all

    if gpu.cause not in ("ok", "not-enough-memory"):
        asset.skip(Status.NOT_CHECKED, f"no working GPU ({gpu.cause}) to check GPU by GPU")
    rows = classify_node(observe_all(checkup.device), gpu_required_bytes(checkup))
    if not rows:
        asset.skip(Status.NOT_CHECKED, f"torch lists no GPU on {checkup.device} to check one by one")
    asset.record_field("gpus", [r.as_dict() for r in rows])
    bad = [r for r in rows if r.status is Status.BROKEN]
    if bad:
        asset.fail("\n".join(f"{r.label()}: {'; '.join(r.problems)}" for r in bad),
                   "exclude this node (see the fleet table) or ask an admin to drain it; nvidia-smi -q shows the GPU")
    unread = [r for r in rows if r.status is Status.NOT_CHECKED]
    if unread:
        asset.skip(Status.NOT_CHECKED, "; ".join(f"{r.label()}: {', '.join(r.not_checked)}" for r in unread),
                   "install nvidia-ml-py (pip install nvidia-ml-py) and run where NVML can be read")


def gpu_required_bytes(checkup) -> int:
    from checks.gpu import required_free_bytes
    from preflight_core.registry import ASSETS

    return required_free_bytes([checkup.world.facts_for(a) for a in ASSETS.values()
                                if a.kind == "model" and checkup.selection.touches(a)])
