"""The ``omnimask`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional

import yaml

from omnimask.cli.submit import ClusterUnreachable
from omnimask.core import registry
from omnimask.core.config import ArgumentError, ConfigError, load_recipe, to_dict
from omnimask.core.logs import format_loss, setup_logging
from omnimask.core.run_dir import RunDir
from omnimask.train.failure import TrainingFailed


def _parse_options(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--option takes KEY=VALUE, got {item!r}")
        out[key] = yaml.safe_load(value)
    return out


def cmd_preprocess(args: argparse.Namespace) -> int:
    from omnimask.data.preprocess import preprocess

    options = _parse_options(args.option)
    if args.resize is not None:
        options["resize"] = args.resize
    m = preprocess(
        args.modality,
        args.input,
        args.output,
        fmt=args.format,
        samples_per_shard=args.samples_per_shard,
        options=options,
        overwrite=args.overwrite,
        ray_address=args.ray_address,
        num_cpus=args.num_cpus,
        executor=args.executor,
    )
    print(
        f"{m.num_inputs} inputs -> {m.num_samples} samples in {len(m.shards)} {m.format} shards "
        f"({m.total_bytes / 1e6:.1f} MB), {m.num_quarantined} quarantined; manifest at {args.output}/manifest.json"
    )
    if m.num_samples == 0:  # every input quarantined: nothing to train on, and a script must notice
        print(f"omnimask preprocess: error: {m.no_samples(args.output)}", file=sys.stderr)
        return 1
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    if args.num_workers is not None:
        overrides.append(f"scaling.num_workers={args.num_workers}")
    if args.use_gpu:
        overrides.append("scaling.use_gpu=true")
    cfg = load_recipe(args.config, overrides)
    if args.resume:
        from omnimask.train.pretrain import resumed_config

        cfg = resumed_config(cfg, args.name, overrides)
    if args.print_config:
        from omnimask.train.pretrain import check_recipe

        check_recipe(cfg)  # a misspelt component parameter fails here too, as it would in the run
        print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
        return 0
    from omnimask.train.pretrain import pretrain

    result = pretrain(cfg, name=args.name, resume=args.resume, ray_address=args.ray_address)
    print(
        f"{trained_steps(result.steps, result.summary['started_at_step'])} in {result.seconds:.0f}s: "
        f"loss {format_loss(result.first_loss)} -> {format_loss(result.last_loss)}"
    )
    print(f"run directory: {result.run_dir}")
    return 0


def trained_steps(steps: int, resumed_from: int) -> str:
    """What this invocation trained, from step ``resumed_from`` (0: a fresh run; a recovery from a worker failure
    within the call does not count) to ``steps``: ``trained 40 steps``, or ``trained steps 21-40 (20 steps, resumed
    from step 20)``."""
    if resumed_from == 0:
        return f"trained {steps} steps"
    if steps <= resumed_from:
        return f"trained no steps (the run was already at step {resumed_from})"
    return f"trained steps {resumed_from + 1}-{steps} ({steps - resumed_from} steps, resumed from step {resumed_from})"


def cmd_submit(args: argparse.Namespace) -> int:
    from pathlib import Path

    from omnimask.cli.submit import pretrain_entrypoint, submit
    from omnimask.train.pretrain import check_recipe, check_resume_name

    local = Path(args.working_dir or ".") / args.config  # the job runs in the uploaded working directory
    cfg = load_recipe(local if local.is_file() else args.config, args.overrides)
    check_recipe(cfg)  # fail here, not on the cluster
    check_resume_name(cfg, args.name, args.resume)
    extra = ["--resume"] if args.resume else []
    if args.num_workers is not None:
        extra += ["--num-workers", str(args.num_workers)]
    runtime_env = json.loads(args.runtime_env_json) if args.runtime_env_json else {}
    if args.working_dir:
        runtime_env["working_dir"] = args.working_dir
    entrypoint = pretrain_entrypoint(args.config, args.overrides, args.name, extra)
    _, status = submit(args.address, entrypoint, runtime_env, follow=not args.no_wait, timeout_s=args.timeout)
    print(f"job status: {status}")
    return 0 if args.no_wait or status == "SUCCEEDED" else 1


def cmd_inspect(args: argparse.Namespace) -> int:
    from omnimask.data.inspect import inspect_dataset

    result = inspect_dataset(args.directory, verify=args.verify)
    print(result.summary())
    if args.stats:
        from pathlib import Path

        recipe = load_recipe(args.recipe) if args.recipe else None
        if recipe is not None and recipe.modality != result.manifest.modality:
            raise ArgumentError(
                f"--recipe {args.recipe} is for {recipe.modality}; {args.directory} holds {result.manifest.modality} samples"
            )
        params = recipe.model.tokenizer.params if recipe is not None else {}
        modality = registry.lookup("modality", result.manifest.modality, "modality")()
        try:
            stats = modality.dataset_stats(Path(args.directory), params, args.max_samples)
        except NotImplementedError as e:
            print(f"omnimask inspect: {e}", file=sys.stderr)
            return 2
        print(f"stats        {stats['summary']}")
        value = lambda v: f"{v:.7g}" if isinstance(v, float) else v  # noqa: E731  (a one-line format, used on the next line)
        print("             use: " + " ".join(f"model.tokenizer.{k}={value(v)}" for k, v in stats["overrides"].items()))
    return 1 if result.problems else 0


def cmd_export(args: argparse.Namespace) -> int:
    from omnimask.weights import export_reference

    try:
        path = export_reference(args.source, args.output)
    except ValueError as e:  # a recipe no reference repository has
        raise ArgumentError(str(e)) from None
    print(f"wrote {path} (load it with the reference repository's code, or start a run from it: model.init={path})")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from omnimask.cli.demo import DEMOS, run_demo

    run_demo(args.workdir, modalities=args.modality or list(DEMOS), steps=args.steps, num_inputs=args.inputs)
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from omnimask.cli.plugins import components, components_named, describe

    items = components(args.kind) if args.name is None else components_named(args.name, args.kind)
    print(describe(items, verbose=not args.brief))
    return 1 if any(c.error for c in items) else 0


def cmd_options(args: argparse.Namespace) -> int:
    from omnimask.cli.plugins import config_sections

    print(config_sections(args.section))
    return 0


def cmd_check_plugin(args: argparse.Namespace) -> int:
    from omnimask.cli import check_plugin

    return check_plugin.run(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="omnimask", description="Masked-modeling pretraining across modalities, on Ray.")
    sub = p.add_subparsers(dest="command", required=True)

    pp = sub.add_parser(
        "preprocess", help="raw files -> shards + manifest.json + quarantine.jsonl (a Ray Data job, or a local process pool)"
    )
    pp.add_argument("modality", help="modality of the inputs: image, video, audio, pointcloud, graph or protein")
    pp.add_argument("--input", required=True, help="input folder (sub-folder names become class labels) or file")
    pp.add_argument("--output", required=True, help="output shard directory")
    pp.add_argument(
        "--format",
        choices=["webdataset", "parquet"],
        default="webdataset",
        help="webdataset: one tar per shard (default); parquet: one Parquet file per shard",
    )
    pp.add_argument("--samples-per-shard", type=int, default=256, help="samples a shard holds (default: 256)")
    pp.add_argument("--resize", type=int, default=None, help="image, video: downscale so the short side is at most this")
    pp.add_argument(
        "--option",
        "-o",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a modality ingest option (repeatable; `omnimask plugins --kind modality` lists them)",
    )
    pp.add_argument("--overwrite", action="store_true", help="replace an existing dataset at --output")
    pp.add_argument("--ray-address", default=None, help="join this Ray cluster (default: RAY_ADDRESS or a local instance)")
    pp.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray instance or pool (default: all)")
    pp.add_argument(
        "--executor",
        choices=["ray", "processes"],
        default="ray",
        help="ray: a Ray Data job (default); processes: a local process pool, where Ray is not installed",
    )
    pp.set_defaults(func=cmd_preprocess)

    pt = sub.add_parser("pretrain", help="pretrain a recipe on a shard directory")
    pt.add_argument("config", help="recipe YAML path or built-in recipe name (e.g. mae_image_tiny)")
    pt.add_argument("overrides", nargs="*", help="dotted overrides, e.g. trainer.max_steps=50 data.path=out/shards")
    pt.add_argument("--name", default=None, help="run name (default: run.name, else a timestamp); the run goes to run.dir/NAME")
    pt.add_argument(
        "--resume",
        action="store_true",
        help="continue run NAME from its latest checkpoint, with its saved config and the overrides given now",
    )
    pt.add_argument("--num-workers", type=int, default=None, help="Ray Train workers (DDP ranks); scaling.num_workers")
    pt.add_argument("--use-gpu", action="store_true", help="one GPU per worker (default: when the cluster has GPUs)")
    pt.add_argument("--ray-address", default=None, help="join this Ray cluster (default: RAY_ADDRESS or a local instance)")
    pt.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    pt.set_defaults(func=cmd_pretrain)

    ins = sub.add_parser("inspect", help="summarise a shard directory; --verify checks every shard against the manifest")
    ins.add_argument("directory", help="a directory written by `omnimask preprocess`")
    ins.add_argument("--verify", action="store_true", help="re-hash and re-count every shard; exit 1 on any mismatch")
    ins.add_argument(
        "--stats",
        action="store_true",
        help="compute what the tokenizer needs from the data (audio: fbank mean/std; graph: node features and width)",
    )
    ins.add_argument("--recipe", default=None, help="with --stats: take the tokenizer settings from this recipe")
    ins.add_argument("--max-samples", type=int, default=None, help="with --stats: use at most this many samples")
    ins.set_defaults(func=cmd_inspect)

    sb = sub.add_parser("submit", help="submit `omnimask pretrain CONFIG ...` as a Ray job, stream its logs, return its status")
    sb.add_argument("config", help="built-in recipe name, or a recipe YAML path inside --working-dir (relative to it)")
    sb.add_argument("overrides", nargs="*", help="dotted overrides passed to the job")
    sb.add_argument("--address", required=True, help="the cluster's dashboard address, e.g. http://127.0.0.1:8265")
    sb.add_argument("--name", default=None, help="run name")
    sb.add_argument("--resume", action="store_true", help="continue run NAME from its latest checkpoint")
    sb.add_argument("--num-workers", type=int, default=None, help="Ray Train workers")
    sb.add_argument("--working-dir", default=None, help="upload this directory as the job's working directory")
    sb.add_argument("--runtime-env-json", default=None, help="a Ray runtime environment as JSON")
    sb.add_argument("--no-wait", action="store_true", help="return right after submitting")
    sb.add_argument("--timeout", type=float, default=None, help="stop the job after this many seconds")
    sb.set_defaults(func=cmd_submit)

    pl = sub.add_parser("plugins", help="list tokenizers, maskers, targets, encoders, heads, losses and modalities: origin and parameters")
    pl.add_argument("--kind", choices=list(registry.KINDS), default=None)
    pl.add_argument("--name", default=None, help="only components of this name, or the class at this dotted path (module:Class)")
    pl.add_argument("--brief", action="store_true", help="one line per component, without parameters")
    pl.set_defaults(func=cmd_plugins)

    op = sub.add_parser("options", help="every key a recipe can set: type, default and help, by section")
    op.add_argument("section", nargs="?", default=None, choices=["recipe", "model", "data", "optim", "trainer", "scaling", "run"])
    op.set_defaults(func=cmd_options)

    cp = sub.add_parser("check-plugin", help="run a component or a modality against its contract on generated input, in a recipe")
    cp.add_argument("name", help="registered name (or module:Class with --kind)")
    cp.add_argument("--kind", choices=list(registry.KINDS), default=None)
    cp.add_argument(
        "--recipe",
        default="mae_image_tiny",
        help="recipe whose slot the component takes (its modality gives the input); for a modality, a recipe for it",
    )
    cp.add_argument(
        "--param",
        "-p",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a parameter of the component (of a modality: of its data.augment section)",
    )
    cp.add_argument("--samples", type=int, default=6, help="generated samples to run")
    cp.set_defaults(func=cmd_check_plugin)

    ex = sub.add_parser("export", help="write a run's model as a checkpoint of the reference repository (MAE, VideoMAE, ...)")
    ex.add_argument("source", help="a run directory (its newest checkpoint) or a checkpoint-step*/ folder or file of one")
    ex.add_argument("--output", required=True, help="folder to write the checkpoint into")
    ex.add_argument(
        "--format",
        choices=["reference"],
        default="reference",
        help="reference: the reference repository's own file layout and key names (docs/recipes.md)",
    )
    ex.set_defaults(func=cmd_export)

    dm = sub.add_parser("demo", help="offline end-to-end demo per modality: generated inputs -> shards -> tiny recipe -> reconstructions")
    dm.add_argument("--workdir", default="demo_out", help="where the demo writes its data and runs")
    dm.add_argument(
        "--modality",
        action="append",
        choices=["image", "video", "audio", "pointcloud", "graph", "protein"],
        help="run only this modality's demo (repeatable; default: all)",
    )
    dm.add_argument("--steps", type=int, default=None, help="training steps (default: each tiny recipe's)")
    dm.add_argument("--inputs", type=int, default=None, help="good input files to generate per modality (default: each demo's)")
    dm.set_defaults(func=cmd_demo)
    return p


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command in ("pretrain", "submit") and not any(e.startswith("-") for e in extra):
        args.overrides += extra  # overrides given after --name/--print-config
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    setup_logging()
    try:
        return args.func(args)
    except (ConfigError, ArgumentError, FileNotFoundError, FileExistsError, ClusterUnreachable) as e:
        print(f"omnimask {args.command}: error: {e}", file=sys.stderr)
        return 2
    except TrainingFailed as e:  # the worker's own error, not Ray's hundred lines around it
        print(f"omnimask {args.command}: error: {e}", file=sys.stderr)
        if e.run_dir is not None:
            print(f"the worker's traceback: {RunDir(e.run_dir).failed_mark}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
