"""The training processes' allocator setting: freed step buffers are reused, not faulted in afresh."""

import json
import platform
import resource
import subprocess
import sys

import pytest

from omnimask.core.config import ConfigError, load_recipe
from omnimask.train.allocator import retain_freed_memory

# A step-like pattern: allocate and touch 80 MB in two 40 MB blocks, free it all, again. Blocks above
# 32 MB, glibc's largest self-tuned mmap threshold on 64-bit, are mapped afresh every time by default;
# smaller ones come and go with the heap's layout (8 MB blocks faulted 5,600-12,300 pages a step in runs
# minutes apart, and 3,677 in a clean-clone run), which made a fixed bar flaky.
BLOCK_BYTES = 40 * 2**20
FAULTS = """
import json, resource, sys
import torch
from omnimask.train.allocator import retain_freed_memory
applied = retain_freed_memory(int(sys.argv[1]))
def step():
    blocks = [torch.ones(int(sys.argv[2])) for _ in range(2)]  # float32: BLOCK_BYTES // 4 each
    return float(sum(b[-1] for b in blocks))
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(json.dumps({"applied": applied, "faults_per_step": (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20}))
"""


def faults_per_step(limit_mb: int) -> dict:
    out = subprocess.run([sys.executable, "-c", FAULTS, str(limit_mb), str(BLOCK_BYTES // 4)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_retained_memory_stops_steps_from_faulting_their_buffers_again():
    default = faults_per_step(0)
    retained = faults_per_step(1024)
    assert default["applied"] is False
    assert retained["applied"] is (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")
    if not retained["applied"]:  # other C libraries keep their own policy: nothing to compare
        return
    # every page of the step's 80 MB is mapped afresh by default...
    assert default["faults_per_step"] > 0.9 * 2 * BLOCK_BYTES / resource.getpagesize(), default
    # ...and with the setting later steps reuse them (the heap may still grow now and then)
    assert retained["faults_per_step"] < default["faults_per_step"] / 20, (default, retained)


def test_limit_is_validated():
    with pytest.raises(ValueError, match=">= 0"):
        retain_freed_memory(-1)
    with pytest.raises(ConfigError, match="trainer.retain_freed_memory_mb"):
        load_recipe("mae_image_tiny", ["trainer.retain_freed_memory_mb=-5"])
    assert load_recipe("mae_image_tiny", []).trainer.retain_freed_memory_mb == 1024
