"""The GPU: a kernel runs and synchronises, enough memory is free for the selected models."""

import pytest

from checks.gpu import GpuCause
from preflight_core.findings import Status

pytestmark = pytest.mark.asset("gpu")


@pytest.fixture
def gpu(asset, checkup):
    if checkup.device == "cpu":
        asset.skip(Status.NOT_REQUESTED, "--device cpu")
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
