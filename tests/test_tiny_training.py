"""scripts/train_tiny_models.py reproduces the committed trained tiny weights (about 10-30 s per model, one core).

Byte-for-byte on the machine that trained them; elsewhere (another CPU's kernels) within a stated
tolerance: every tensor within 1e-4 of the committed one.
"""

from __future__ import annotations

import pytest

from checks.tiny_models import SEEDS, TINY_WEIGHTS_DIR, trained_weights

pytestmark = pytest.mark.torch  # builds or loads models: not in the light run at the floors

TOLERANCE = 1e-4


@pytest.mark.parametrize("name", list(SEEDS))
def test_training_script_reproduces_the_committed_weights(tmp_path, name):
    import torch
    from safetensors.torch import load

    from scripts import train_tiny_models

    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        data = train_tiny_models.train(name, tmp_path, log=lambda *_: None)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    committed = trained_weights(name)
    if data == committed:
        return
    ours, theirs = load(data), load(committed)
    assert ours.keys() == theirs.keys()
    worst = max(float((ours[k].float() - theirs[k].float()).abs().max()) for k in ours)
    assert worst <= TOLERANCE, f"{name}: retrained weights differ from {TINY_WEIGHTS_DIR} by up to {worst:.2e}"


def test_committed_weights_are_small():
    sizes = {p.name: p.stat().st_size for p in TINY_WEIGHTS_DIR.glob("*.safetensors.gz")}
    assert len(sizes) == 4 and sum(sizes.values()) < 1_000_000, sizes
