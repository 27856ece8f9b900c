"""Mutation fuzzing of ``omnimask preprocess``: real inputs of every modality, mutated with a seed, each
ingested by the preprocessing unit code and every kept sample read back through the loader.

Invariants checked for every mutant (a breach is a *failure*, reported with what reproduces it):

- no crash: the unit task returns (a process that dies, a native crash included, or hangs is a failure);
- accounting: ``num_inputs == num_samples + num_quarantined`` for the mutant's unit, and its shards hold
  ``num_samples`` samples;
- every quarantine entry has a reason;
- every kept sample goes through the loader's sample pipeline (decode, tokenize, mask, target) of the
  modality's tiny recipe, strict (an error is not replaced);
- bounded time: no input takes longer than ``--max-seconds``.

Each modality runs in a child process of its own (``--child``), so that a native crash or a hang is
caught and named: the child logs the index of the mutant it starts. A mutant is regenerated from
``(modality, --seed, index)`` alone: ``python -m fuzzing.run --modality video --seed 0 --index 123``.

Usage::

    python -m fuzzing.run                       # a short run: 60 mutants per modality
    python -m fuzzing.run --long                # 2,000 per modality (12,000 in all), nightly-style
    OMNIMASK_FUZZ_LONG=1 pytest tests/test_fuzz.py   # the same long run through the test
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Optional

SEED_INPUTS = 6
"""Good inputs per modality the demo builders write as the corpus (plus their few broken ones)."""
SHORT, LONG = 100, 2000
"""Mutants per modality of a short run (the test suite's) and a long one."""
FOREIGN_EXTS = ("txt", "bin", "jpg", "mp4", "wav", "ply", "npz", "fasta")
"""Extensions a mutant may be renamed to, besides its own modality's."""
RESULT = "FUZZ_RESULT "


@dataclasses.dataclass
class Mutant:
    """One mutated input: ``path`` (a file, or a TU dataset folder with one mutated file), from ``origin``."""

    index: int
    origin: str
    path: Path
    steps: list[str]


@dataclasses.dataclass
class Outcome:
    """What one mutant gave: records kept and quarantined, seconds, the failures found, unexpected reasons."""

    kept: int = 0
    quarantined: int = 0
    seconds: float = 0.0
    failures: list[str] = dataclasses.field(default_factory=list)
    unexpected: list[str] = dataclasses.field(default_factory=list)


def corpus(modality: str, root: Path) -> list[Path]:
    """The inputs the demo of ``modality`` writes (good ones and its few broken ones), as preprocess lists them."""
    from omnimask.core import registry
    from omnimask.data.sources import list_inputs

    mod = registry.lookup("modality", modality)()
    mod.example_inputs(root, SEED_INPUTS)
    return [Path(f.path) for f in list_inputs(root, mod.is_dataset_folder)]


def make_mutant(modality: str, seeds: list[Path], seed: int, index: int, out: Path) -> Mutant:
    """Mutant ``index`` of ``modality``: a seed input picked and mutated by a generator of ``(seed, index)``
    alone, written under ``out/<index>/`` (a folder input is copied and one of its files mutated)."""
    from fuzzing.mutations import mutate
    from omnimask.core.seeding import rng

    g = rng("fuzz", modality, seed, index)
    origin = seeds[int(g.integers(0, len(seeds)))]
    folder = out / f"{index:06d}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    if origin.is_dir():
        path = folder / origin.name
        shutil.copytree(origin, path)
        files = sorted(path.iterdir())
        target = files[int(g.integers(0, len(files)))]
        data, steps = mutate(target.read_bytes(), g)
        target.write_bytes(data)
        return Mutant(index, f"{origin.name}/{target.name}", path, steps)
    data, steps = mutate(origin.read_bytes(), g)
    name = origin.name
    if g.random() < 0.15:  # a file under another modality's extension, or its own modality's other one
        own = sorted({p.suffix.lstrip(".") for p in seeds if p.suffix})
        ext = str(g.choice(own + list(FOREIGN_EXTS)))
        name = f"{origin.stem}.{ext}"
        steps.append(f"renamed to .{ext}")
    path = folder / name
    path.write_bytes(data)
    return Mutant(index, origin.name, path, steps)


class Checker:
    """Runs mutants through the unit code and the loader of one modality, in this process."""

    def __init__(self, modality: str, work: Path, max_seconds: float):
        from omnimask.cli.demo import DEMOS
        from omnimask.core import registry
        from omnimask.core.config import load_recipe
        from omnimask.core.recipe import Recipe
        from omnimask.data.loader import SamplePipeline

        self.modality, self.work, self.max_seconds = modality, work, max_seconds
        self.options = dataclasses.asdict(registry.lookup("modality", modality)().IngestConfig())
        self.pipeline = SamplePipeline(Recipe.check(load_recipe(DEMOS[modality].recipe)), seed=0, strict=True)
        self.last_reasons: list[str] = []
        """The quarantine reasons of the last mutant run."""

    def run(self, mutant: Mutant) -> Outcome:
        from omnimask.data.sources import InputFile
        from omnimask.data.units import write_unit
        from omnimask.io.formats import iter_tar

        shards = self.work / "shards" / f"{mutant.index:06d}"
        shards.mkdir(parents=True, exist_ok=True)
        source = InputFile(str(mutant.path), mutant.path.name, None)
        unit = {"index": mutant.index, "first": 0, "inputs": [dataclasses.asdict(source)]}
        out = Outcome()
        started = time.perf_counter()
        report = write_unit(unit, self.modality, "webdataset", self.options, shards, [], 64)
        out.seconds = time.perf_counter() - started
        out.quarantined = len(report["quarantine"])
        self.last_reasons = [q.get("reason") for q in report["quarantine"]]
        for shard in report["shards"]:
            for key, members in iter_tar(shards / shard["path"]):
                try:
                    self.pipeline(key, members, 0)
                except Exception as e:  # kept, yet the loader cannot read it: ingest let it through
                    out.failures.append(f"sample {key} was kept but fails in the loader: {type(e).__name__}: {e}")
                out.kept += 1
        if out.kept != sum(s["num_samples"] for s in report["shards"]):
            out.failures.append(f"shards hold {out.kept} samples, the report says {sum(s['num_samples'] for s in report['shards'])}")
        if report["num_inputs"] != out.kept + out.quarantined:
            out.failures.append(f"accounting: {report['num_inputs']} inputs != {out.kept} kept + {out.quarantined} quarantined")
        for q in report["quarantine"]:
            if not isinstance(q.get("reason"), str) or not q["reason"].strip():
                out.failures.append(f"quarantine entry without a reason: {q}")
            elif _unexpected(q["reason"]):
                out.unexpected.append(q["reason"][:200])
        if out.seconds > self.max_seconds:
            out.failures.append(f"took {out.seconds:.1f}s (> {self.max_seconds}s)")
        shutil.rmtree(shards)
        shutil.rmtree(mutant.path.parent)
        return out


def _unexpected(reason: str) -> bool:
    """Whether a quarantine reason is an exception the ingest did not foresee (the unit's catch-all gives
    ``TypeName: message``): accounted for, but a reader should have said what is wrong."""
    head = reason.split(":", 1)[0]
    return head.isidentifier() and head.endswith(("Error", "Exception")) and head not in ("QuarantineError",)


def fuzz_modality(
    modality: str,
    *,
    seed: int,
    count: int,
    budget: float,
    max_seconds: float,
    work: Path,
    indices: Optional[list[int]] = None,
    progress: Optional[Path] = None,
) -> dict[str, Any]:
    """Run ``count`` mutants (or ``indices``) of ``modality`` in this process within ``budget`` seconds;
    returns the figures (mutants, kept, quarantined, failures, slowest input, peak RSS, ...)."""
    seeds = corpus(modality, work / "corpus")
    checker = Checker(modality, work, max_seconds)
    started = time.perf_counter()
    todo = indices if indices is not None else range(count)
    totals, failures, unexpected = Counter(), [], Counter()
    slowest = (0.0, -1, "")
    for done, index in enumerate(todo):
        if indices is None and time.perf_counter() - started > budget:
            break
        if progress is not None:
            progress.write_text(str(index))  # a native crash in this mutant leaves its index here
        mutant = make_mutant(modality, seeds, seed, index, work / "mutants")
        what = f"mutant {index} of {mutant.origin}: {'; '.join(mutant.steps)}"
        out = checker.run(mutant)
        totals.update(mutants=1, kept=out.kept, quarantined=out.quarantined)
        failures += [f"{what}: {f}" for f in out.failures]
        unexpected.update(out.unexpected)
        if out.seconds > slowest[0]:
            slowest = (out.seconds, index, what)
        if done % 100 == 99:
            rate = (done + 1) / (time.perf_counter() - started)
            print(
                f"fuzz {modality}: {done + 1}/{len(todo)} mutants, {rate:.1f}/s, ETA {(len(todo) - done - 1) / rate:.0f}s",
                file=sys.stderr,
                flush=True,
            )
    return {
        "modality": modality,
        "seed": seed,
        "mutants": totals["mutants"],
        "kept": totals["kept"],
        "quarantined": totals["quarantined"],
        "failures": failures,
        "seconds": round(time.perf_counter() - started, 2),
        "slowest_seconds": round(slowest[0], 3),
        "slowest": slowest[2],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "unexpected_reasons": sum(unexpected.values()),
        "unexpected_examples": [r for r, _ in unexpected.most_common(5)],
    }


def fuzz(
    modalities: list[str],
    *,
    seed: int = 0,
    count: int = SHORT,
    budget: float = 600.0,
    max_seconds: float = 30.0,
    jobs: int = 1,
    indices: Optional[list[int]] = None,
) -> list[dict[str, Any]]:
    """Fuzz each modality in a child process (``jobs`` at a time); a child that dies or overruns its
    budget by more than a minute is a failure naming the mutant it was on. Returns each modality's figures."""
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="omnimask-fuzz-") as tmp:
        pending = list(modalities)
        running: list[tuple[str, subprocess.Popen, Path, float]] = []
        while pending or running:
            while pending and len(running) < jobs:
                modality = pending.pop(0)
                work = Path(tmp) / modality
                work.mkdir()
                args = [
                    sys.executable,
                    "-m",
                    "fuzzing.run",
                    "--child",
                    "--modality",
                    modality,
                    "--seed",
                    str(seed),
                    "--count",
                    str(count),
                    "--budget",
                    str(budget),
                    "--max-seconds",
                    str(max_seconds),
                    "--work",
                    str(work),
                ]
                if indices is not None:
                    args += ["--index", *map(str, indices)]
                env = dict(
                    os.environ,
                    OMP_NUM_THREADS="1",
                    PYTHONPATH=os.pathsep.join([str(Path(__file__).parent.parent), os.environ.get("PYTHONPATH", "")]),
                )
                with open(work / "stderr", "w") as log:  # native decoders' chatter, and a crash's traceback
                    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
                running.append((modality, proc, work, time.monotonic()))
            time.sleep(0.2)
            for item in list(running):
                modality, proc, work, began = item
                overrun = time.monotonic() - began > budget + 60 + (len(indices) * max_seconds if indices else 0)
                if proc.poll() is None and not overrun:
                    continue
                running.remove(item)
                if overrun and proc.poll() is None:
                    proc.kill()
                stdout = proc.communicate()[0]
                lines = [line for line in stdout.splitlines() if line.startswith(RESULT)]
                if proc.returncode == 0 and lines:
                    results.append(json.loads(lines[-1][len(RESULT) :]))
                    continue
                at = (work / "progress").read_text() if (work / "progress").exists() else "?"
                why = "hung" if overrun else f"died with exit status {proc.returncode}"
                tail = "\n".join((work / "stderr").read_text(errors="replace").splitlines()[-15:])
                results.append(
                    {
                        "modality": modality,
                        "seed": seed,
                        "mutants": None,
                        "failures": [
                            f"the fuzzing process {why} on mutant {at} (reproduce: python -m fuzzing.run --modality {modality} "
                            f"--seed {seed} --index {at}); its last words:\n{tail}"
                        ],
                    }
                )
    return sorted(results, key=lambda r: modalities.index(r["modality"]))


def table(results: list[dict[str, Any]]) -> str:
    """The figures as a Markdown table."""
    rows = [
        "| modality | mutants | kept | quarantined | failures | unexpected reasons | slowest input (s) | peak RSS (MB) | seconds |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        rows.append(
            f"| {r['modality']} | {r.get('mutants')} | {r.get('kept')} | {r.get('quarantined')} | {len(r['failures'])} | "
            f"{r.get('unexpected_reasons')} | {r.get('slowest_seconds')} | {r.get('peak_rss_mb')} | {r.get('seconds')} |"
        )
    return "\n".join(rows)


def main(argv: Optional[list[str]] = None) -> int:
    from omnimask.cli.demo import DEMOS

    p = argparse.ArgumentParser(prog="python -m fuzzing.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--modality", nargs="+", default=sorted(DEMOS), choices=sorted(DEMOS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--count", type=int, default=None, help=f"mutants per modality (default {SHORT}, --long {LONG})")
    p.add_argument("--long", action="store_true", help=f"{LONG} mutants per modality, no time budget to speak of")
    p.add_argument("--budget", type=float, default=None, help="seconds per modality (default: 600; --long: 7200)")
    p.add_argument("--max-seconds", type=float, default=30.0, help="the longest one input may take")
    p.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2) // 2), help="modalities fuzzed at once")
    p.add_argument("--index", type=int, nargs="+", default=None, help="only these mutants (reproduce a failure)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    count = args.count or (LONG if args.long else SHORT)
    budget = args.budget or (7200.0 if args.long else 600.0)
    if args.child:
        import torch

        torch.set_num_threads(1)
        result = fuzz_modality(
            args.modality[0],
            seed=args.seed,
            count=count,
            budget=budget,
            max_seconds=args.max_seconds,
            work=args.work,
            indices=args.index,
            progress=args.work / "progress",
        )
        print(RESULT + json.dumps(result), flush=True)
        return 0
    results = fuzz(
        args.modality, seed=args.seed, count=count, budget=budget, max_seconds=args.max_seconds, jobs=args.jobs, indices=args.index
    )
    print(table(results))
    for r in results:
        for failure in r["failures"]:
            print(f"FAILURE {r['modality']}: {failure}")
        for example in r.get("unexpected_examples", []):
            print(f"unexpected reason ({r['modality']}): {example}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 1 if any(r["failures"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
