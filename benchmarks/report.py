"""The Markdown report of :mod:`benchmarks.run`'s results: one table per section, the issue's targets first."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional


def table(header: list[str], rows: Iterable[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def x(v: Optional[float]) -> str:
    return "—" if v is None else f"x{v:.2f}"


def first(rows: list[dict[str, Any]], pred: Callable[[dict[str, Any]], bool]) -> Optional[dict[str, Any]]:
    return next((r for r in rows if pred(r)), None)


def targets(sections: dict[str, list[dict[str, Any]]]) -> list[list[Any]]:
    """``[what, target, measured, met]`` for each of the issue's targets the run measured."""
    out = []
    image = first(sections.get("loader", []), lambda r: r["modality"] == "image" and r["workers"] == 1)
    if image:
        out.append(["image loader vs ImageFolder, 1 worker", ">= x1.50", x(image["speedup_vs_reference"]),
                    image["speedup_vs_reference"] >= 1.5])
        out.append(["tokenize+mask+target over decode+augment", "<= 10%", f"{100 * image['mask_target_overhead']:.1f}%",
                    image["mask_target_overhead"] <= 0.10])
    def step(precision: str, compiled: bool) -> Optional[dict[str, Any]]:
        return first(sections.get("train", []), lambda r: r.get("recipe") == "mae_image_tiny" and r["device"] == "cpu"
                     and r["precision"] == precision and r["compile"] == compiled)

    eager, compiled = step("32", False), step("32", True)
    turns = first(sections.get("train", []), lambda r: "interleaved" in r)
    if turns:
        ratio = turns["interleaved"]["speedup"]
        out.append(["tiny MAE step vs plain MAE, CPU fp32, both eager, steps in turn in one process", ">= x1.20", x(ratio),
                    ratio >= 1.2])
    if eager:
        out.append(["tiny MAE step vs plain MAE, CPU fp32, both eager (the plain MAE's FLOPs a step / omnimask's: "
                    f"{x(eager.get('flop_ratio'))})", ">= x1.20", x(eager["speedup"]), eager["speedup"] >= 1.2])
    if compiled:
        out.append(["tiny MAE step vs plain MAE, CPU fp32, both compiled", ">= x1.20", x(compiled["speedup"]),
                    compiled["speedup"] >= 1.2])
    as_run = first(sections.get("train", []), lambda r: "as_run" in r)
    if as_run:
        sides = as_run["as_run"]["sides"]
        same = x(as_run["as_run"]["same_setting_speedup"])
        if "whole_batch_speedup" in as_run["as_run"]:
            same += f"; with the batch whole, no trainer.cpu_batch_parts: {x(as_run['as_run']['whole_batch_speedup'])}"
        for label, what in (("omnimask", "fp32 eager"), ("omnimask_compiled", "trainer.compile"), ("omnimask_bf16", "bf16-mixed")):
            if label in sides:
                note = f" (model against model, the plain MAE with the same settings: {same})" if label == "omnimask" else ""
                out.append([f"tiny MAE step as omnimask pretrain runs it, {what}, vs plain MAE as MAE's script runs it (fp32, "
                            "eager, default AdamW), each in its own process, steps in turn", ">= x1.20",
                            x(sides[label]["speedup"]) + note,
                            sides[label]["speedup"] >= 1.2])
    pre = first(sections.get("scaling", []), lambda r: r["kind"] == "preprocess" and r["cpus"] == 2)
    if pre:
        out.append(["preprocessing, 2 CPUs vs 1", ">= x1.60", x(pre["speedup"]), pre["speedup"] >= 1.6])
    return [[w, t, m, "met" if ok else "**not met**"] for w, t, m, ok in out]


def markdown(results: dict[str, Any]) -> str:
    m, s = results["machine"], results["sections"]
    parts = [
        "# omnimask benchmarks\n",
        f"{results['started']}; {m['cpu']}, {m['cores']} cores ({m['cpu_capability']}), "
        f"{'GPU ' + m['gpu'] if m['gpu'] else 'no GPU'}; Python {m['python']}, torch {m['torch']}"
        f"{'; **quick run: tiny inputs, figures not meaningful**' if results['quick'] else ''}.\n",
        "Every ratio is against a baseline timed in the same invocation on the same inputs.\n",
    ]
    goals = targets(s)
    if goals:
        parts += ["## Targets\n", table(["what", "target", "measured", ""], goals)]
    if "preprocess" in s:
        parts += ["## Preprocessing (Ray Data job on 2 CPUs vs a single-process webdataset.ShardWriter loop)\n", table(
            ["modality", "samples", "input MB", "ShardWriter loop", "omnimask", "ratio"],
            ([r["modality"], r["samples"], r["input_mb"],
              f"{r['shardwriter_samples_per_s']:.1f}/s, {r['shardwriter_mb_per_s']:.1f} MB/s",
              f"{r['omnimask_samples_per_s']:.1f}/s, {r['omnimask_mb_per_s']:.1f} MB/s", x(r["speedup"])] for r in s["preprocess"]))]
        if s["preprocess"]:
            parts.append(f"Fixed cost left out above: the first job on a fresh Ray instance took "
                         f"{s['preprocess'][0]['first_job_s']:.1f} s (worker start, imports).\n")
    if "loader" in s:
        parts += ["## Loader (samples/s per loader worker, full recipe output)\n", table(
            ["modality", "workers", "reference", "decode only", "omnimask", "vs reference", "tokenize+mask+target cost",
             "with data.repeats"],
            ([r["modality"], r["workers"], f"{r['reference']} {r[r['reference']]:.1f}/s", f"{r['omnimask-decode']:.1f}/s",
              f"{r['omnimask']:.1f}/s", x(r["speedup_vs_reference"]), f"{100 * r['mask_target_overhead']:.1f}%",
              f"{r['omnimask-views']:.1f}/s ({r['repeats']} views)" if "omnimask-views" in r else ""]
             for r in s["loader"]))]
    if "train" in s:
        parts.append("## Training step (forward, backward, AdamW; one batch in memory)\n")
        if not m.get("cpu_bf16", True) and not m["gpu"]:
            parts.append("No bf16 rows: this CPU has no bf16 instructions (AVX512-BF16 or AMX), so its bf16 products are "
                         "emulated, ~20x slower than fp32.\n")
        parts += [table(
            ["recipe", "device", "precision", "batch", "omnimask", "peak MB (+steps)", "plain (paper-style)", "peak MB (+steps)", "ratio",
             "GFLOP a step (plain / omnimask)", "loss omnimask / plain"],
            ([r["recipe"], r["device"], r["precision"] + (" compiled" if r["compile"] else ""), r["batch_size"],
              f"{r['samples_per_s']:.1f}/s ({r['step_ms']:.0f} ms)", f"{r['peak_mb']:.0f} (+{r['step_mb']:.0f})",
              f"{r['plain_samples_per_s']:.1f}/s" if "plain_samples_per_s" in r else "—",
              f"{r['plain_peak_mb']:.0f} (+{r['plain_step_mb']:.0f})" if "plain_peak_mb" in r else "—",
              x(r.get("speedup")),
              f"{r['gflop']:.2f}" + (f" ({r['plain_gflop']:.2f} / x{r['flop_ratio']:.2f})" if "plain_gflop" in r else ""),
              f"{r['equal_loss']['omnimask']:.5f} / {r['equal_loss']['plain']:.5f}" if r.get("equal_loss") else "—"]
             for r in s["train"] if "as_run" not in r and "interleaved" not in r))]
    if "scaling" in s:
        parts += ["## Scaling (1 vs 2 on the same machine)\n", table(
            ["what", "1", "2", "ratio"],
            ([f"{kind} ({'CPUs' if kind == 'preprocess' else 'Ray Train workers'})",
              f"{rows[0]['samples_per_s']:.0f}/s", f"{rows[1]['samples_per_s']:.0f}/s", x(rows[1]["speedup"])]
             for kind in ("preprocess", "train")
             if len(rows := [r for r in s["scaling"] if r["kind"] == kind]) == 2))]
    if "micro" in s:
        parts += ["## Micro-benchmarks (median ms)\n", table(
            ["what", "dtype", "figures"],
            ([r["what"], r["dtype"], ", ".join(f"{k} {v:.2f}" for k, v in r.items() if k not in ("what", "dtype"))]
             for r in s["micro"]))]
    parts.append(f"Section times (s): {results['seconds']}\n")
    return "\n".join(parts)
