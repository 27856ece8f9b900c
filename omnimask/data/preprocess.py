"""Preprocessing as a Ray Data job: raw files -> shards + manifest + quarantine list.

The sorted inputs are cut into units of ``samples_per_shard`` files; unit ``i``
becomes shard ``shard-{i:06d}`` (fewer samples when some of its inputs are
quarantined; no file when all are). Each unit is one Ray Data row, mapped by a
task that reads, validates, decodes and encodes its files and writes its shard
under a temporary name, then renames it. Units run in parallel on every CPU of
the cluster; the driver only merges the small per-unit reports into the
manifest, which is written last. The shard a file lands in depends on the
sorted input list only, so the same inputs give the same shards.

Where Ray is not installed (a bare GPU box, say), ``executor="processes"`` maps
the same units over a local process pool instead: same shards, same manifest.

Crash safety: shards and reports are written under temporary names and
renamed when complete, and each unit leaves a small report file after its
shard. Re-running the same command after a crash (even ``kill -9``) keeps the
completed units, redoes the rest and writes the manifest last; re-running it
over a finished dataset is a no-op. Other inputs or arguments need
``--overwrite``, which removes only the files preprocess writes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Optional

import numpy as np

from omnimask.core import registry
from omnimask.core.config import ArgumentError, from_dict
from omnimask.core.interfaces import Modality
from omnimask.data.sources import InputFile, list_inputs
from omnimask.data.units import UNIT_PREFIX, UnitTask, finished_units
from omnimask.io.formats import SHARD_SUFFIX
from omnimask.io.manifest import DUPLICATES, MANIFEST, QUARANTINE, SIZES, Manifest, ShardInfo, file_sha256, write_atomic

log = logging.getLogger(__name__)


class OutputExistsError(FileExistsError):
    """The output directory holds another dataset (or other files) and ``--overwrite`` was not given."""


def preprocess(
    modality: str,
    input_path: str | Path,
    output_dir: str | Path,
    fmt: str = "webdataset",
    samples_per_shard: int = 256,
    options: Optional[dict[str, Any]] = None,
    overwrite: bool = False,
    ray_address: Optional[str] = None,
    num_cpus: Optional[int] = None,
    executor: str = "ray",
) -> Manifest:
    """Turn the raw files under ``input_path`` into a shard directory at ``output_dir``.

    ``options`` are the modality's ingest options (image: ``resize``, ...),
    validated against its ``IngestConfig``. Runs on the Ray cluster at
    ``ray_address``/``RAY_ADDRESS``, or on a local instance started for the job;
    with ``executor="processes"``, on ``num_cpus`` local processes instead.
    """
    if executor not in EXECUTORS:
        raise ArgumentError(f"unknown executor {executor!r}; use one of {list(EXECUTORS)}")
    if fmt not in SHARD_SUFFIX:
        raise ArgumentError(f"unknown format {fmt!r}; use one of {sorted(SHARD_SUFFIX)}")
    if samples_per_shard < 1:
        raise ArgumentError(f"samples_per_shard must be >= 1, got {samples_per_shard}")
    if executor == "processes" and ray_address:
        raise ArgumentError("executor='processes' runs on this machine: it takes no ray_address")
    mod: Modality = registry.lookup("modality", modality, "modality")()
    opts = from_dict(mod.IngestConfig, options or {}, "preprocess")
    inputs = list_inputs(input_path, mod.is_dataset_folder)
    if not inputs:
        raise FileNotFoundError(f"no input files under {input_path}")
    out = Path(output_dir)
    plan = _plan_digest(modality, fmt, samples_per_shard, dataclasses.asdict(opts), inputs)
    finished = _prepare_output(out, overwrite, Path(input_path), plan)
    if finished is not None:
        log.info("%s already holds this dataset (same inputs and arguments): nothing to do", out)
        return finished

    classes = sorted({f.label for f in inputs if f.label is not None})
    units = plan_units(inputs, samples_per_shard, mod)
    done = finished_units(out, len(units))
    todo = [u for u in units if u["index"] not in done]
    if done:
        log.info("resuming: %d of %d shard units are already complete in %s", len(done), len(units), out)
    task = UnitTask(modality, fmt, dataclasses.asdict(opts), str(out.resolve()), classes, samples_per_shard)
    new_reports, elapsed = EXECUTORS[executor](todo, task, ray_address, num_cpus) if todo else ([], 0.0)
    reports = sorted([*done.values(), *new_reports], key=lambda r: r["index"])
    busy = sum(r["task"]["end"] - r["task"]["start"] for r in new_reports)

    quarantine = [q for r in reports for q in r["quarantine"]]
    shards = [ShardInfo(**{k: v for k, v in s.items() if k != "sizes"}) for r in reports for s in r["shards"]]
    sizes = write_sizes(out, [s.get("sizes") for r in reports for s in r["shards"]])
    write_atomic(out / QUARANTINE, "".join(json.dumps(q) + "\n" for q in quarantine).encode())
    duplicates = find_duplicates(reports)
    if duplicates:
        write_atomic(out / DUPLICATES, "".join(json.dumps(d) + "\n" for d in duplicates).encode())
    manifest = Manifest(
        modality=modality,
        format=fmt,  # type: ignore[arg-type]  # a str, checked against SHARD_SUFFIX's keys above
        num_inputs=sum(r["num_inputs"] for r in reports),
        num_samples=sum(s.num_samples for s in shards),
        num_quarantined=len(quarantine),
        shards=shards,
        classes=classes,
        sizes=sizes,
        preprocess={
            "input": str(input_path),
            "format": fmt,
            "samples_per_shard": samples_per_shard,
            "options": dataclasses.asdict(opts),
            "plan": plan,
            "seconds": round(elapsed, 3),
            "task_seconds": round(busy, 3),
            "workers": len({r["task"]["pid"] for r in new_reports}),
            "resumed_units": len(done),
            "duplicates": len(duplicates),
        },
    )
    reported_files = sum(r["num_files"] for r in reports)
    if reported_files != len(inputs):
        raise RuntimeError(f"lost inputs: {len(inputs)} listed, {reported_files} reported by the shard tasks")
    manifest.save(out)  # last: a directory with a manifest is complete
    for path in out.glob(f"{UNIT_PREFIX}*"):
        path.unlink()
    (out / PLAN).unlink(missing_ok=True)
    log.info(
        "preprocessed %d inputs into %d samples in %d shards (%d quarantined%s) in %.1fs (%.1f inputs/s)",
        manifest.num_inputs,
        manifest.num_samples,
        len(shards),
        manifest.num_quarantined,
        f", {len(duplicates)} duplicates listed in {DUPLICATES}" if duplicates else "",
        elapsed,
        sum(r["num_inputs"] for r in new_reports) / max(elapsed, 1e-9),
    )
    return manifest


def write_sizes(out: Path, per_shard: list[Optional[list[int]]]) -> Optional[dict[str, str]]:
    """``sizes.npy`` (every sample's size, shard order) when every sample has one; its manifest entry."""
    if not per_shard or any(s is None for s in per_shard):
        (out / SIZES).unlink(missing_ok=True)
        return None
    buf = io.BytesIO()
    np.save(buf, np.array([v for s in per_shard for v in s], dtype=np.int64))  # type: ignore[union-attr]  # no None: returned above
    write_atomic(out / SIZES, buf.getvalue())
    return {"path": SIZES, "sha256": file_sha256(out / SIZES)}


def plan_units(inputs: list[InputFile], samples_per_shard: int, mod: Modality) -> list[dict[str, Any]]:
    """Consecutive runs of up to ``samples_per_shard`` single-record inputs; an input that holds many
    records (``Modality.holds_many``) is a unit of its own, which rolls over into as many shards as it needs."""
    units: list[dict[str, Any]] = []
    run: list[int] = []

    def close() -> None:
        if run:
            units.append({"index": len(units), "first": run[0], "inputs": [dataclasses.asdict(inputs[i]) for i in run]})
            run.clear()

    for i, f in enumerate(inputs):
        if mod.holds_many(Path(f.path)):
            close()
            run.append(i)
            close()
        else:
            run.append(i)
            if len(run) == samples_per_shard:
                close()
    close()
    return units


def find_duplicates(reports: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Samples whose content digest equals an earlier sample's (``{"source", "same_as"}``), in input order.
    Only modalities that give digests (protein sequences) are checked; duplicates are kept, and listed."""
    first: dict[str, str] = {}
    out = []
    for r in reports:
        for source, digest in r.get("digests", []):
            if digest in first:
                out.append({"source": source, "same_as": first[digest]})
            else:
                first[digest] = source
    return out


PLAN = ".preprocess-plan.json"


def _plan_digest(modality: str, fmt: str, samples_per_shard: int, options: dict[str, Any], inputs: list[InputFile]) -> str:
    """Identifies a job: its arguments and every input's path, size and modification time."""
    h = hashlib.sha256(json.dumps([modality, fmt, samples_per_shard, options], sort_keys=True).encode())
    for f in inputs:
        paths = sorted(Path(f.path).iterdir()) if os.path.isdir(f.path) else [Path(f.path)]  # a dataset folder: its files
        for path in paths:
            try:
                st = os.stat(path)
                h.update(os.fsencode(f"{f.source}/{path.name}\0{st.st_size}\0{st.st_mtime_ns}\n"))
            except OSError:  # a broken link: quarantined later, still part of the job
                h.update(os.fsencode(f"{f.source}/{path.name}\0missing\n"))
    return h.hexdigest()


def _run_units(
    units: list[dict[str, Any]], task: UnitTask, ray_address: Optional[str], num_cpus: Optional[int]
) -> tuple[list[dict], float]:
    """Map the units over the Ray cluster; each writes its shard and its report. Returns the
    reports and the seconds the job took (Ray start-up excluded)."""
    import ray.data

    from omnimask.data.ray_env import ray_session

    with ray_session(ray_address, num_cpus):
        started = time.perf_counter()
        rows = [{"unit": json.dumps(u)} for u in units]
        ctx = ray.data.DataContext.get_current()
        reserving = ctx.op_resource_reservation_enabled
        # One operator: Ray Data's per-operator reservation would hold it to half the CPUs.
        ctx.op_resource_reservation_enabled = False
        try:
            ds = ray.data.from_items(rows, override_num_blocks=len(rows)).map(task, num_cpus=1)
            return [json.loads(r["report"]) for r in ds.take_all()], time.perf_counter() - started
        finally:
            ctx.op_resource_reservation_enabled = reserving


def _run_units_in_processes(
    units: list[dict[str, Any]], task: UnitTask, ray_address: Optional[str], num_cpus: Optional[int]
) -> tuple[list[dict], float]:
    """The same map over a local pool of ``num_cpus`` (default: the CPUs this process may use) fresh
    processes, one thread each, without Ray; logs progress with rate and ETA. Returns the reports and the
    seconds the job took. A failing unit cancels the units not started and raises. The processes are
    spawned: a script that calls this must guard its top level with ``if __name__ == "__main__":``."""
    started = time.perf_counter()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = max(1, min(len(units), num_cpus or usable))
    reports, inputs, last = [], 0, started
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_one_thread)
    try:
        for done in as_completed([pool.submit(task, {"unit": json.dumps(u)}) for u in units]):
            reports.append(json.loads(done.result()["report"]))
            inputs += reports[-1]["num_files"]
            now = time.perf_counter()
            if now - last > 10 or len(reports) == len(units):
                rate = len(reports) / (now - started)
                log.info(
                    "preprocess: %d/%d shard units, %d inputs, %.1f inputs/s, ETA %.0fs",
                    len(reports),
                    len(units),
                    inputs,
                    inputs / (now - started),
                    (len(units) - len(reports)) / rate,
                )
                last = now
    finally:
        pool.shutdown(cancel_futures=True)
    return reports, time.perf_counter() - started


def _one_thread() -> None:
    """Pool initializer: one thread a process, as Ray gives a task of one CPU (the pool has one per CPU)."""
    import torch

    torch.set_num_threads(1)


EXECUTORS = {"ray": _run_units, "processes": _run_units_in_processes}


def _prepare_output(out: Path, overwrite: bool, input_path: Path, plan: str) -> Optional[Manifest]:
    """Make ``out`` ready; returns the finished manifest when the same job already completed there.

    A finished dataset from other inputs or arguments is replaced only with
    ``overwrite``; so is an interrupted one (its plan file differs). An
    interrupted run of the same job is resumed.
    """
    src, dst = input_path.resolve(), out.resolve()
    if dst == src or dst in src.parents or src in dst.parents:
        raise ArgumentError(f"the output {out} must not contain, or lie inside, the input {input_path}")
    if (out / MANIFEST).exists():
        existing = Manifest.load(out)
        if not overwrite:
            if existing.preprocess.get("plan") == plan:
                return existing
            raise OutputExistsError(
                f"{out} already holds a dataset ({MANIFEST}) from other inputs or arguments; pass --overwrite to replace it"
            )
        _remove_outputs(out)
    elif (out / PLAN).exists() and json.loads((out / PLAN).read_text())["plan"] != plan:
        if not overwrite:
            raise OutputExistsError(f"{out} holds an interrupted run of other inputs or arguments; pass --overwrite")
        _remove_outputs(out)
    out.mkdir(parents=True, exist_ok=True)
    for tmp in out.glob(".*.tmp*"):  # partial files of a killed run
        tmp.unlink()
    write_atomic(out / PLAN, json.dumps({"plan": plan}).encode())
    return None


def _remove_outputs(out: Path) -> None:
    """Remove only what preprocess writes, never other files in the folder."""
    for path in out.iterdir():
        if path.name in (MANIFEST, QUARANTINE, DUPLICATES, SIZES, PLAN) or path.name.startswith(
            ("shard-", UNIT_PREFIX, ".shard-", f".{MANIFEST}", f".{QUARANTINE}", f".{DUPLICATES}", f".{SIZES}")
        ):
            path.unlink()
