"""Per-GPU sub-rows from fake observations: each fault flagged on its own GPU, benign states not flagged."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from checks.fleet import merge, write_node_report
from checks.gpus import GpuFacts, NvmlFacts, classify_gpu, classify_node, sub_row_text
from preflight_core.findings import Status

GiB = 1 << 30
HEALTHY_NVML = NvmlFacts(ecc_uncorrected_volatile=0, remapped_pending=False, remapped_failed=False,
                         clock_event_reasons=0x1, other_processes=(), pcie_gen=5, pcie_gen_max=5,
                         pcie_width=16, pcie_width_max=16)


def gpu(index: int, tflops: float = 600.0, **nvml) -> GpuFacts:
    return GpuFacts(index=index, uuid=f"GPU-0000000{index}-aaaa-bbbb-cccc-dddddddddddd",
                    pci_bus_id=f"00000000:{0x18 + index:02X}:00.0", name="NVIDIA H100 80GB HBM3", kernel_ok=True,
                    free_bytes=79 * GiB, total_bytes=80 * GiB, bf16=True, tflops=tflops,
                    nvml=replace(HEALTHY_NVML, **nvml))


def test_a_healthy_idle_gpu_is_ready():
    row = classify_gpu(gpu(0), required_bytes=10 * GiB, median_tflops=600.0)
    assert row.status is Status.READY and row.problems == [] and row.warnings == []


@pytest.mark.parametrize("reasons", [0x1, 0x4, 0x1 | 0x4 | 0x2], ids=["idle", "sw-power-cap", "idle+cap+app"])
def test_benign_clock_event_reasons_are_not_flagged(reasons):
    assert classify_gpu(gpu(0, clock_event_reasons=reasons)).status is Status.READY


@pytest.mark.parametrize("bit, words", [(0x8, "HW slowdown"), (0x20, "SW thermal"), (0x40, "HW thermal"),
                                        (0x80, "power brake")])
def test_harmful_clock_event_reasons_are_flagged(bit, words):
    row = classify_gpu(gpu(0, clock_event_reasons=bit | 0x1))
    assert row.status is Status.BROKEN and words in row.problems[0]


@pytest.mark.parametrize("nvml, words", [
    ({"ecc_uncorrected_volatile": 3}, "3 uncorrected ECC"),
    ({"remapped_pending": True}, "remapped rows pending"),
    ({"remapped_failed": True}, "row remapping failed"),
    ({"other_processes": ((4242, 30 * GiB),)}, "1 other process(es) hold 30.0 GiB (pid 4242)"),
])
def test_nvml_faults_are_flagged(nvml, words):
    row = classify_gpu(gpu(0, **nvml))
    assert row.status is Status.BROKEN and words in row.problems[0]


def test_a_pcie_link_below_its_maximum_is_only_a_warning():
    row = classify_gpu(gpu(0, pcie_gen=3, pcie_width=8))
    assert row.status is Status.READY and "gen3 x8, below its maximum gen5 x16" in row.warnings[0]


def test_unreadable_nvml_is_not_checked_never_passed():
    row = classify_gpu(replace(gpu(0), nvml=NvmlFacts(errors=("NVML unavailable: NVMLError_NoPermission",))))
    assert row.status is Status.NOT_CHECKED and "NoPermission" in row.not_checked[0]


def test_a_failed_kernel_and_too_little_memory_are_flagged():
    dead = replace(gpu(0), kernel_ok=False, kernel_error="CUDA error: an illegal memory access", tflops=None)
    assert "illegal memory access" in classify_gpu(dead).problems[0]
    full = replace(gpu(1), free_bytes=2 * GiB)
    assert "2.0 GiB free of 80.0 GiB" in classify_gpu(full, required_bytes=10 * GiB).problems[0]


def node_of_four() -> list[GpuFacts]:
    """GPU 1 has pending remapped rows, GPU 2 is 40 % slower than the median, GPU 3 is held by another process."""
    return [gpu(0), gpu(1, remapped_pending=True), gpu(2, tflops=360.0),
            gpu(3, other_processes=((777, 20 * GiB),)), gpu(4), gpu(5)]


def test_each_fault_is_flagged_on_its_own_sub_row_by_index_and_uuid():
    rows = classify_node(node_of_four())
    status = {r.index: r.status for r in rows}
    assert status == {0: Status.READY, 1: Status.BROKEN, 2: Status.BROKEN, 3: Status.BROKEN,
                      4: Status.READY, 5: Status.READY}
    assert "remapped rows pending" in rows[1].problems[0] and len(rows[1].problems) == 1
    assert "60% of the median of this node (600.0)" in rows[2].problems[0] and len(rows[2].problems) == 1
    assert "pid 777" in rows[3].problems[0] and len(rows[3].problems) == 1
    text = sub_row_text(rows[2].as_dict())
    assert text.startswith("✗ GPU 2 GPU-00000002-aaaa-bbbb-cccc-dddddddddddd bus 00000000:1A:00.0")


def test_the_merge_shows_the_bad_gpus_by_index_uuid_and_bus(tmp_path, capsys):
    rows = [r.as_dict() for r in classify_node(node_of_four())]
    report = {"ok": False, "complete": True, "problems": [], "verdict": "NOT READY",
              "assets": [{"name": "gpu", "status": "broken", "problems": ["3 GPUs"], "fix": "", "fix_commands": [],
                          "gpus": rows}]}
    write_node_report(tmp_path, report, {"SLURMD_NODENAME": "node23", "SLURM_JOB_ID": "7"})
    verdict = merge(tmp_path, ["node23"])
    text = "\n".join(verdict.lines())
    assert "node23  not ready  broken  3/6" in text
    for index in (1, 2, 3):
        assert f"✗ GPU {index} GPU-0000000{index}-aaaa" in text
    assert "✗ GPU 0 " not in text and "GPU 4" not in text
    assert 'state=drain reason="preflight: GPU 1 GPU-00000001' in text


def test_a_gpu_slow_against_the_fleet_median_is_flagged_by_the_merge(tmp_path):
    """Every GPU of node03 is alike (no node-level outlier) but 40 % slower than the fleet."""
    for node, speed in (("node01", 600.0), ("node02", 610.0), ("node03", 360.0)):
        rows = [r.as_dict() for r in classify_node([gpu(0, tflops=speed), gpu(1, tflops=speed)])]
        assert all(r["status"] == "ready" for r in rows)
        report = {"ok": True, "complete": True, "problems": [], "verdict": "READY",
                  "assets": [{"name": "gpu", "status": "ready", "problems": [], "fix": "", "fix_commands": [],
                              "gpus": rows}]}
        write_node_report(tmp_path, report, {"SLURMD_NODENAME": node})
    verdict = merge(tmp_path, ["node01", "node02", "node03"])
    assert verdict.not_ready == ["node03"] and verdict.exit_code == 1
    text = "\n".join(verdict.lines())
    assert "60% of the fleet median (600.0)" in text and "--exclude=node03" in text


class FakeNvml:
    """NVML's functions over a table of devices, raising nvidia-ml-py's own errors (no GPU here)."""

    def __init__(self, devices: dict[str, dict], deny: frozenset[str] = frozenset()):
        import pynvml

        self.real = pynvml
        self.NVMLError = pynvml.NVMLError
        self.NVML_MEMORY_ERROR_TYPE_UNCORRECTED = pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED
        self.NVML_VOLATILE_ECC = pynvml.NVML_VOLATILE_ECC
        self.devices = devices
        self.deny = deny  # function names that fail with "Insufficient Permissions"

    def __getattr__(self, name):
        def call(*args):
            if name in self.deny:
                raise self.real.NVMLError(self.real.NVML_ERROR_NO_PERMISSION)
            return getattr(self, "_" + name)(*args)
        return call

    def _nvmlDeviceGetHandleByUUID(self, uuid):
        if uuid not in self.devices:
            raise self.real.NVMLError(self.real.NVML_ERROR_NOT_FOUND)
        return uuid

    def _nvmlDeviceGetHandleByPciBusId(self, bus):
        return next(u for u, d in self.devices.items() if d["bus"] == bus)

    def _nvmlDeviceGetTotalEccErrors(self, h, kind, counter):
        if self.devices[h].get("ecc") is None:
            raise self.real.NVMLError(self.real.NVML_ERROR_NOT_SUPPORTED)
        return self.devices[h]["ecc"]

    def _nvmlDeviceGetRemappedRows(self, h):
        return (0, 0, int(self.devices[h].get("pending", 0)), 0)

    def _nvmlDeviceGetCurrentClocksEventReasons(self, h):
        return self.devices[h].get("reasons", 0x1)

    def _nvmlDeviceGetComputeRunningProcesses(self, h):
        return [type("P", (), {"pid": pid, "usedGpuMemory": n})() for pid, n in self.devices[h].get("procs", [])]

    def _nvmlDeviceGetCurrPcieLinkGeneration(self, h):
        return 5

    _nvmlDeviceGetMaxPcieLinkGeneration = _nvmlDeviceGetCurrPcieLinkGeneration

    def _nvmlDeviceGetCurrPcieLinkWidth(self, h):
        return 16

    _nvmlDeviceGetMaxPcieLinkWidth = _nvmlDeviceGetCurrPcieLinkWidth


def test_nvml_is_matched_by_uuid_and_its_readings_classified():
    from checks.gpus import nvml_facts

    nvml = FakeNvml({"GPU-a": {"bus": "00000000:18:00.0", "ecc": 0},
                     "GPU-b": {"bus": "00000000:19:00.0", "ecc": 2, "pending": True, "procs": [(99, 4 * GiB)]}})
    # CUDA index 0 is NVML's second device: the UUID decides, not the index.
    facts = nvml_facts(nvml, "GPU-b", "00000000:19:00.0")
    row = classify_gpu(replace(gpu(0), nvml=facts))
    assert facts.ecc_uncorrected_volatile == 2 and facts.remapped_pending and facts.other_processes == ((99, 4 * GiB),)
    assert row.status is Status.BROKEN and len(row.problems) == 3
    assert classify_gpu(replace(gpu(1), nvml=nvml_facts(nvml, "GPU-a", None))).status is Status.READY


def test_nvml_falls_back_to_the_bus_id_and_not_supported_is_not_a_problem():
    from checks.gpus import nvml_facts

    nvml = FakeNvml({"GPU-a": {"bus": "00000000:18:00.0", "ecc": None}})  # a card without ECC
    facts = nvml_facts(nvml, "GPU-unknown-to-nvml", "00000000:18:00.0")
    assert facts.ecc_uncorrected_volatile is None and facts.clock_event_reasons == 0x1
    assert facts.errors == ()
    assert classify_gpu(replace(gpu(0), nvml=facts)).status is Status.READY
    assert nvml_facts(nvml, "GPU-unknown", None).errors == ("device by UUID: Not Found",)


def test_nvml_without_permission_is_not_checked():
    from checks.gpus import nvml_facts

    nvml = FakeNvml({"GPU-a": {"bus": "b", "ecc": 0}}, deny=frozenset({"nvmlDeviceGetRemappedRows"}))
    row = classify_gpu(replace(gpu(0), nvml=nvml_facts(nvml, "GPU-a", "b")))
    assert row.status is Status.NOT_CHECKED
    assert row.not_checked == ["NVML: remapped rows: Insufficient Permissions"]


def test_no_nvml_library_here_is_said_not_passed():
    from checks.gpus import open_nvml

    module, why = open_nvml()
    if module is not None:
        pytest.skip("this machine has an NVIDIA driver")
    assert why.startswith("NVML unavailable: NVMLError_LibraryNotFound")
    row = classify_gpu(replace(gpu(0), nvml=NvmlFacts(errors=(why,))))
    assert row.status is Status.NOT_CHECKED


def test_the_gpu_row_of_one_node_gains_a_sub_row_per_gpu():
    """Without --fleet: the readiness table shows every GPU under the gpu row, the bad ones marked."""
    from checks.report import Report

    report = Report("-m 'phase1'")
    rows = classify_node(node_of_four())
    report.add("gpu", True, False, {"status": "broken", "problem": "3 of 6 GPUs", "fix": "", "fix_commands": []})
    report.rows["gpu"].fields["gpus"] = [r.as_dict() for r in rows]
    text = "\n".join(report.lines(width=400))
    assert text.count("    ✓ GPU ") == 3 and text.count("    ✗ GPU ") == 3
    assert "✗ GPU 1 GPU-00000001-aaaa-bbbb-cccc-dddddddddddd bus 00000000:19:00.0, 600.0 TFLOP/s: remapped rows" in text
    assert report.as_dict()["assets"][0]["gpus"][2]["status"] == "broken"


def test_in_a_container_this_process_is_not_counted_as_another():
    """NVML lists host pids; os.getpid() is the container's: the smallest holder is taken for this process."""
    from checks.gpus import nvml_facts

    nvml = FakeNvml({"GPU-a": {"bus": "b", "ecc": 0, "procs": [(91234, 1 * GiB)]}})
    alone = nvml_facts(nvml, "GPU-a", "b", on_gpu=True)
    assert alone.own_pid_seen is False and classify_gpu(replace(gpu(0), nvml=alone)).status is Status.READY
    nvml.devices["GPU-a"]["procs"].append((91300, 30 * GiB))
    row = classify_gpu(replace(gpu(0), nvml=nvml_facts(nvml, "GPU-a", "b", on_gpu=True)))
    assert row.status is Status.BROKEN and "1 other process(es) hold 30.0 GiB (pid 91300)" in row.problems[0]
    # Our own pid in the list (no container): it is never counted.
    nvml.devices["GPU-a"]["procs"] = [(os.getpid(), GiB)]
    assert classify_gpu(replace(gpu(0), nvml=nvml_facts(nvml, "GPU-a", "b", on_gpu=True))).status is Status.READY
