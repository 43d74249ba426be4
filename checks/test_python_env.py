"""The Python environment: versions the experiments need, a torch/torchvision pair that works."""

import pytest

from checks import envinfo
from checks.verbs import expect_none
from preflight_core.findings import Fix

pytestmark = pytest.mark.asset("python_env")


def test_package_versions(asset):
    problems = envinfo.environment_problems()
    if problems:  # each problem has its own fix: all of them, in order
        fixes = list(dict.fromkeys(f.the_fix for f in problems))
        commands = tuple(c for f in fixes for c in f.commands) if all(f.commands for f in fixes) else ()
        asset.fail("\n".join(f.problem() for f in problems), Fix("; ".join(f.text for f in fixes), commands))


@pytest.mark.model
def test_torch_and_torchvision_work_together(asset):
    problem = envinfo.torch_pair_problem()
    expect_none([problem] if problem else [])
