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
        out.append(
            ["image loader vs ImageFolder, 1 worker", ">= x1.50", x(image["speedup_vs_reference"]), image["speedup_vs_reference"] >= 1.5]
        )
        out.append(
            [
                "tokenize+mask+target over decode+augment",
                "<= 10%",
                f"{100 * image['mask_target_overhead']:.1f}%",
                image["mask_target_overhead"] <= 0.10,
            ]
        )
    as_run = first(sections.get("train", []), lambda r: "as_run" in r)
    eager = tiny_mae_row(sections, "32", False)
    if as_run and "omnimask" in as_run["as_run"]["sides"]:
        ratio = as_run["as_run"]["sides"]["omnimask"]["speedup"]
        loss = eager.get("equal_loss") if eager else None
        equal = bool(loss) and loss["abs_diff"] <= 1e-5 * max(1.0, abs(loss["plain"]))
        measured = x(ratio) + (f"; loss {loss['omnimask']:.5f} / {loss['plain']:.5f}" if loss else "; loss not compared")
        out.append(
            [
                "tiny MAE step on the CPU, fp32, as omnimask pretrain runs it vs the plain MAE as MAE's script runs "
                "it (each in its own process, steps in turn), equal loss on equal weights and mask",
                ">= x1.20",
                measured,
                ratio >= 1.2 and equal,
            ]
        )
    pre = first(sections.get("scaling", []), lambda r: r["kind"] == "preprocess" and r["cpus"] == 2)
    if pre:
        out.append(["preprocessing, 2 CPUs vs 1", ">= x1.60", x(pre["speedup"]), pre["speedup"] >= 1.6])
    return [[w, t, m, "met" if ok else "**not met**"] for w, t, m, ok in out]


def tiny_mae_row(sections: dict[str, list[dict[str, Any]]], precision: str, compiled: bool) -> Optional[dict[str, Any]]:
    """The training table's tiny MAE row on the CPU in ``precision``, compiled or eager."""
    return first(
        sections.get("train", []),
        lambda r: r.get("recipe") == "mae_image_tiny" and r["device"] == "cpu" and r["precision"] == precision and r["compile"] == compiled,
    )


def tiny_mae_readings(sections: dict[str, list[dict[str, Any]]]) -> list[list[str]]:
    """``[reading, ratio]`` for the tiny MAE step measured other ways than the target's, each against the plain
    MAE: the model alone (same settings on both sides), compiled, bf16, and the other timing methods."""
    rows: list[list[str]] = []
    as_run = first(sections.get("train", []), lambda r: "as_run" in r)
    if as_run:
        run, sides = as_run["as_run"], as_run["as_run"]["sides"]
        rows.append(
            [
                "model against model: the plain MAE with omnimask's allocator setting and fused AdamW, omnimask "
                "with the recipe's trainer.cpu_batch_parts",
                x(run["same_setting_speedup"]),
            ]
        )
        if "whole_batch_speedup" in run:
            rows.append(["the same, omnimask with the batch whole (trainer.cpu_batch_parts=1)", x(run["whole_batch_speedup"])])
        for label, what in (("omnimask_compiled", "trainer.compile"), ("omnimask_bf16", "bf16-mixed (loss not bit-equal)")):
            if label in sides:
                rows.append([f"as the target, omnimask with {what}", x(sides[label]["speedup"])])
    eager, compiled = tiny_mae_row(sections, "32", False), tiny_mae_row(sections, "32", True)
    if eager:
        rows.append(
            [
                "both eager and fused AdamW, glibc's allocator defaults, omnimask with the recipe's batch parts, each "
                "in its own process one after the other (the training table)",
                x(eager["speedup"]),
            ]
        )
    turns = first(sections.get("train", []), lambda r: "interleaved" in r)
    if turns:
        rows.append(["both eager with the batch whole, steps in turn in one process", x(turns["interleaved"]["speedup"])])
    if compiled:
        rows.append(["both compiled, each in its own process one after the other", x(compiled["speedup"])])
    if eager and "flop_ratio" in eager:
        rows.append(["the plain MAE's FLOPs a step / omnimask's (the same maths: the bound without engineering)", x(eager["flop_ratio"])])
    return rows


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
        parts += [
            "## Preprocessing (Ray Data job on 2 CPUs vs a single-process webdataset.ShardWriter loop)\n",
            table(
                ["modality", "samples", "input MB", "ShardWriter loop", "omnimask", "ratio"],
                (
                    [
                        r["modality"],
                        r["samples"],
                        r["input_mb"],
                        f"{r['shardwriter_samples_per_s']:.1f}/s, {r['shardwriter_mb_per_s']:.1f} MB/s",
                        f"{r['omnimask_samples_per_s']:.1f}/s, {r['omnimask_mb_per_s']:.1f} MB/s",
                        x(r["speedup"]),
                    ]
                    for r in s["preprocess"]
                ),
            ),
        ]
        if s["preprocess"]:
            parts.append(
                f"Fixed cost left out above: the first job on a fresh Ray instance took "
                f"{s['preprocess'][0]['first_job_s']:.1f} s (worker start, imports).\n"
            )
    if "loader" in s:
        parts += [
            "## Loader (samples/s per loader worker, full recipe output)\n",
            table(
                [
                    "modality",
                    "workers",
                    "reference",
                    "decode only",
                    "omnimask",
                    "vs reference",
                    "tokenize+mask+target cost",
                    "with data.repeats",
                ],
                (
                    [
                        r["modality"],
                        r["workers"],
                        f"{r['reference']} {r[r['reference']]:.1f}/s",
                        f"{r['omnimask-decode']:.1f}/s",
                        f"{r['omnimask']:.1f}/s",
                        x(r["speedup_vs_reference"]),
                        f"{100 * r['mask_target_overhead']:.1f}%",
                        f"{r['omnimask-views']:.1f}/s ({r['repeats']} views)" if "omnimask-views" in r else "",
                    ]
                    for r in s["loader"]
                ),
            ),
        ]
    if "train" in s:
        parts.append("## Training step (forward, backward, AdamW; one batch in memory)\n")
        if not m.get("cpu_bf16", True) and not m["gpu"]:
            parts.append(
                "No bf16 rows: this CPU has no bf16 instructions (AVX512-BF16 or AMX), so its bf16 products are "
                "emulated, ~20x slower than fp32.\n"
            )
        parts += [
            table(
                [
                    "recipe",
                    "device",
                    "precision",
                    "batch",
                    "omnimask",
                    "peak MB (+steps)",
                    "plain (paper-style)",
                    "peak MB (+steps)",
                    "ratio",
                    "GFLOP a step (plain / omnimask)",
                    "loss omnimask / plain",
                ],
                (
                    [
                        r["recipe"],
                        r["device"],
                        r["precision"] + (" compiled" if r["compile"] else ""),
                        r["batch_size"],
                        f"{r['samples_per_s']:.1f}/s ({r['step_ms']:.0f} ms)",
                        f"{r['peak_mb']:.0f} (+{r['step_mb']:.0f})",
                        f"{r['plain_samples_per_s']:.1f}/s" if "plain_samples_per_s" in r else "—",
                        f"{r['plain_peak_mb']:.0f} (+{r['plain_step_mb']:.0f})" if "plain_peak_mb" in r else "—",
                        x(r.get("speedup")),
                        f"{r['gflop']:.2f}" + (f" ({r['plain_gflop']:.2f} / x{r['flop_ratio']:.2f})" if "plain_gflop" in r else ""),
                        f"{r['equal_loss']['omnimask']:.5f} / {r['equal_loss']['plain']:.5f}" if r.get("equal_loss") else "—",
                    ]
                    for r in s["train"]
                    if "as_run" not in r and "interleaved" not in r
                ),
            )
        ]
        if readings := tiny_mae_readings(s):
            parts += ["### The tiny MAE step read other ways (not the target's reading)\n", table(["reading", "ratio"], readings)]
    if "scaling" in s:
        parts += [
            "## Scaling (1 vs 2 on the same machine)\n",
            table(
                ["what", "1", "2", "ratio"],
                (
                    [
                        f"{kind} ({'CPUs' if kind == 'preprocess' else 'Ray Train workers'})",
                        f"{rows[0]['samples_per_s']:.0f}/s",
                        f"{rows[1]['samples_per_s']:.0f}/s",
                        x(rows[1]["speedup"]),
                    ]
                    for kind in ("preprocess", "train")
                    if len(rows := [r for r in s["scaling"] if r["kind"] == kind]) == 2
                ),
            ),
        ]
    if "micro" in s:
        parts += [
            "## Micro-benchmarks (median ms)\n",
            table(
                ["what", "dtype", "figures"],
                (
                    [r["what"], r["dtype"], ", ".join(f"{k} {v:.2f}" for k, v in r.items() if k not in ("what", "dtype"))]
                    for r in s["micro"]
                ),
            ),
        ]
    parts.append(f"Section times (s): {results['seconds']}\n")
    return "\n".join(parts)
