"""The Python environment: versions the experiments need, a torch/torchvision pair that works."""

import pytest

from checks import envinfo

pytestmark = pytest.mark.asset("python_env")


def test_package_versions(asset):
    problems = envinfo.environment_problems()
    if problems:
        asset.fail("\n".join(problems))


@pytest.mark.model
def test_torch_and_torchvision_work_together(asset):
    problem = envinfo.torch_pair_problem()
    if problem:
        asset.fail(problem)
