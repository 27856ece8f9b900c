"""The training processes' allocator setting: freed step buffers are reused, not faulted in afresh."""

import json
import platform
import subprocess
import sys

import pytest

from omnimask.config import ConfigError, load_recipe
from omnimask.orchestration.allocator import retain_freed_memory

# A step-like pattern: allocate and touch a few tens of MB in 8 MB blocks, free it all, again.
FAULTS = """
import json, resource, sys
import torch
from omnimask.orchestration.allocator import retain_freed_memory
applied = retain_freed_memory(int(sys.argv[1]))
def step():
    blocks = [torch.ones(2 * 2**20) for _ in range(6)]
    return float(sum(b[-1] for b in blocks))
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(json.dumps({"applied": applied, "faults_per_step": (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20}))
"""


def faults_per_step(limit_mb: int) -> dict:
    out = subprocess.run([sys.executable, "-c", FAULTS, str(limit_mb)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_retained_memory_stops_steps_from_faulting_their_buffers_again():
    default = faults_per_step(0)
    retained = faults_per_step(1024)
    assert default["applied"] is False
    assert retained["applied"] is (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")
    if not retained["applied"]:  # other C libraries keep their own policy: nothing to compare
        return
    # 48 MB of 4 KiB pages a step: glibc returns them to the kernel after each step by default...
    assert default["faults_per_step"] > 5000, default
    # ...and with the setting later steps reuse them (the heap may still grow now and then)
    assert retained["faults_per_step"] < default["faults_per_step"] / 20, (default, retained)


def test_limit_is_validated():
    with pytest.raises(ValueError, match=">= 0"):
        retain_freed_memory(-1)
    with pytest.raises(ConfigError, match="trainer.retain_freed_memory_mb"):
        load_recipe("mae_image_tiny", ["trainer.retain_freed_memory_mb=-5"])
    assert load_recipe("mae_image_tiny", []).trainer.retain_freed_memory_mb == 1024
