"""Training steps of several set-ups, each in a process of its own, taken in turn: one step of each, then
the next round, the order rotating every round.

    python -m benchmarks.lockstep [--recipe mae_image_tiny] [--steps 40]

Settings that hold for a whole process (the allocator setting ``omnimask pretrain``'s workers apply,
``torch.compile``) cannot be compared inside one process, and separate runs one after the other drift by
±10% on a shared VM (docs/performance.md). Here every process builds its model and batch, then waits; the
driver tells one at a time to take a step and reads back how long it took, so a slow moment of the machine
lands on every side alike, and only one side computes at any moment. The default set-ups: omnimask as
``omnimask pretrain`` runs the step (fp32 eager, its worker's allocator setting, fused AdamW, the recipe's
``trainer.cpu_batch_parts``), the same
with ``trainer.compile`` (and with ``bf16-mixed`` on a CPU with bf16 instructions), and the plain MAE as
MAE's script runs it (glibc's defaults, torch's default AdamW); beside them omnimask with the batch whole (no
``trainer.cpu_batch_parts``), omnimask without the allocator setting, and the plain MAE with omnimask's
settings (allocator setting and fused AdamW), model against model.
"""

from __future__ import annotations

import argparse
import functools
import json
import resource
import select
import subprocess
import sys
import tempfile
import time
from typing import IO, Any

from benchmarks.train_step import CASES, ROOT, build, prepare_step
from benchmarks.turns import take_turns

REPLY_TIMEOUT = 900.0
"""Seconds a side may take to set up (compilation included) or to take one step (an emulated bf16 step: ~5 s)."""


def serve(spec: dict[str, Any]) -> None:
    """The side's process: set up, say ``ready``, then answer each ``step`` line on stdin with the step's
    seconds and page faults (a JSON line), until stdin closes."""
    from omnimask.train.allocator import retain_freed_memory

    retained = retain_freed_memory(spec.get("retain_mb", 0))
    step, gflop = prepare_step(
        spec["recipe"],
        spec["impl"],
        spec["batch_size"],
        "cpu",
        spec.get("precision", "32"),
        spec.get("compile", False),
        spec.get("fused_adamw", True),
        spec.get("batch_parts"),
    )
    print(json.dumps({"ready": True, "gflop": gflop, "retained": retained}), flush=True)
    for line in sys.stdin:
        if line.strip() != "step":
            raise ValueError(f"unknown command {line!r}")
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t = time.perf_counter()
        step()
        seconds = time.perf_counter() - t
        print(json.dumps({"s": seconds, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults}), flush=True)


def read_reply(proc: subprocess.Popen[str], label: str, stderr: IO[str], timeout: float = REPLY_TIMEOUT) -> dict[str, Any]:
    """The side's next JSON line; a side that ended, or has said nothing for ``timeout`` seconds (killed then),
    raises with the end of its stderr."""
    # each request gets one line back, read whole, so nothing waits in the pipe's buffer when select looks
    if proc.stdout and not select.select([proc.stdout], [], [], timeout)[0]:
        proc.kill()
        proc.wait()
        stderr.seek(0)
        raise TimeoutError(f"side {label!r} gave no reply in {timeout:.0f} s: {stderr.read()[-3000:]}")
    line = proc.stdout.readline() if proc.stdout else ""
    if not line:
        proc.wait(timeout=30)
        stderr.seek(0)
        raise RuntimeError(f"side {label!r} ended (exit code {proc.returncode}): {stderr.read()[-3000:]}")
    return json.loads(line)


def in_turn(sides: dict[str, dict[str, Any]], steps: int, warmup: int = 3) -> dict[str, dict[str, Any]]:
    """``sides``: label -> set-up (``recipe``, ``impl``, ``batch_size``, optional ``precision``, ``compile``,
    ``retain_mb``, ``fused_adamw``). Returns each side's mean step in ms, page faults a step, GFLOP and set-up, after
    ``warmup`` untimed rounds (compilation happens there) and ``steps`` timed ones."""
    # stderr to files: a side that warns more than a pipe holds would block while nobody reads it
    errors = {label: tempfile.TemporaryFile("w+") for label in sides}
    procs = {
        label: subprocess.Popen(
            [sys.executable, "-m", "benchmarks.lockstep", "--serve", json.dumps(spec)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors[label],
            text=True,
        )
        for label, spec in sides.items()
    }
    try:
        ready = {label: read_reply(proc, label, errors[label]) for label, proc in procs.items()}

        def step(label: str) -> dict[str, Any]:
            procs[label].stdin.write("step\n")  # type: ignore[union-attr]  # started with stdin=PIPE
            procs[label].stdin.flush()  # type: ignore[union-attr]  # started with stdin=PIPE
            return read_reply(procs[label], label, errors[label])

        replies = take_turns({label: functools.partial(step, label) for label in sides}, steps, warmup)
    finally:
        for proc in procs.values():
            if proc.stdin:
                proc.stdin.close()
        for proc in procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stderr in errors.values():
            stderr.close()
    return {
        label: {
            **sides[label],
            "step_ms": 1000 * sum(r["s"] for r in replies[label]) / steps,
            "page_faults_per_step": sum(r["faults"] for r in replies[label]) / steps,
            "gflop": ready[label]["gflop"],
            "retained": ready[label]["retained"],
        }
        for label in sides
    }


def as_run(recipe: str = "mae_image_tiny", steps: int = 40, batch_size: int | None = None, compile: bool = True) -> dict[str, Any]:
    """omnimask's step as ``omnimask pretrain`` runs it against the plain MAE as MAE's script runs it (see the
    module's docstring), each ratio against the latter. With ``bf16-mixed`` too
    where the CPU multiplies bf16 in hardware (elsewhere a bf16 step takes seconds: emulated products)."""
    from omnimask.train.worker import cpu_has_bf16

    retain = build(recipe, CASES[recipe][2]).config.trainer.retain_freed_memory_mb
    base = {"recipe": recipe, "batch_size": batch_size or CASES[recipe][0]}
    sides = {
        "omnimask": {**base, "impl": "omnimask", "retain_mb": retain},
        "omnimask_whole": {**base, "impl": "omnimask", "retain_mb": retain, "batch_parts": 1},
        "omnimask_system": {**base, "impl": "omnimask"},
        "plain": {**base, "impl": "plain", "fused_adamw": False},
        "plain_tuned": {**base, "impl": "plain", "retain_mb": retain},
    }
    if compile:
        sides["omnimask_compiled"] = {**base, "impl": "omnimask", "retain_mb": retain, "compile": True}
    if cpu_has_bf16():
        sides["omnimask_bf16"] = {**base, "impl": "omnimask", "retain_mb": retain, "precision": "bf16"}
    rows = in_turn(sides, steps)
    plain_ms = rows["plain"]["step_ms"]
    for label, row in rows.items():
        row["speedup"] = plain_ms / row["step_ms"]
        print(
            f"{label:18s} {row['step_ms']:7.1f} ms a step  x{row['speedup']:.3f}  page faults a step {row['page_faults_per_step']:7.0f}",
            flush=True,
        )
    same = rows["plain_tuned"]["step_ms"] / rows["omnimask"]["step_ms"]
    whole = rows["plain_tuned"]["step_ms"] / rows["omnimask_whole"]["step_ms"]
    print(
        f"model against model (both with the allocator setting and fused AdamW): x{same:.3f}; "
        f"the batch whole (no trainer.cpu_batch_parts): x{whole:.3f}",
        flush=True,
    )
    return {
        "recipe": recipe,
        "steps": steps,
        "retain_mb": retain,
        "sides": rows,
        "same_setting_speedup": same,
        "whole_batch_speedup": whole,
        "as_run_speedup": rows["omnimask"]["speedup"],
    }


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--serve":
        serve(json.loads(sys.argv[2]))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", choices=list(CASES), default="mae_image_tiny")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--no-compile", action="store_true", help="leave out the trainer.compile side")
    args = ap.parse_args()
    as_run(args.recipe, args.steps, args.batch_size, not args.no_compile)


if __name__ == "__main__":
    main()
