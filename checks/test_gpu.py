"""The GPU: a kernel runs and synchronises, enough memory is free for the selected models."""

import pytest

pytestmark = pytest.mark.asset("gpu")


@pytest.fixture
def gpu(checkup):
    if checkup.device == "cpu":
        pytest.skip("not-requested: --device cpu: the GPU is not checked (forward passes run on the CPU)")
    return checkup.gpu_report


def test_cuda_kernel_runs(gpu, asset):
    if gpu.cause not in ("ok", "not-enough-memory"):
        pytest.fail("\n".join(gpu.problems), pytrace=False)
    asset.note_info(gpu.summary())
    for note in gpu.notes:
        asset.note_info(note)


def test_enough_free_memory_for_the_selected_models(gpu):
    if gpu.cause not in ("ok", "not-enough-memory"):
        pytest.skip(f"not-checked: no working GPU ({gpu.cause}) to measure")
    if gpu.cause == "not-enough-memory":
        pytest.fail("\n".join(gpu.problems), pytrace=False)
