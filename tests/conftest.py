"""Shared fixtures: real image files made with Pillow, a real local Ray instance; the ``ray`` and ``slow`` markers.

``pytest -m "not slow"`` runs the unit-level tests in a few minutes; ``make test`` runs everything.
"""

from __future__ import annotations

import ast
import inspect
import io
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from types import FunctionType

import numpy as np
import pytest
from PIL import Image

from omnimask.data.scratch import temp_dir_for_processes

os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # no ~/.ray/auth_token from test clusters


OMNIMASK = [sys.executable, "-m", "omnimask.cli.main"]


@pytest.fixture(scope="session", autouse=True)
def suite_temp_dir(tmp_path_factory):
    """A temporary folder of the suite's own, removed at the end.

    A Ray instance with a dashboard leaves a ``pymp-*`` folder behind (Ray kills the dashboard at shutdown,
    before multiprocessing's clean-up runs in it). omnimask's own local instances keep theirs in a folder they
    remove (``ray_env.instance_temp_dir``); the clusters tests start with ``ray start`` do not. Processes the
    tests start inherit this folder, so whatever they leave lands here. pytest's own folders stay in the
    system's temporary folder (made before the switch), as do Ray's session files."""
    tmp_path_factory.getbasetemp()
    path = tempfile.mkdtemp(prefix="omnimask-tests-")  # short: sockets are made two levels below
    with temp_dir_for_processes(path, this_process=True):
        yield Path(path)
    shutil.rmtree(path, ignore_errors=True)


def run_cli(args: list[str], cwd: Path, timeout: int = 540) -> subprocess.CompletedProcess:
    """``omnimask ARGS`` in a subprocess; fails the test, with its output, unless it exits 0."""
    env = dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONUNBUFFERED="1")
    proc = subprocess.run([*OMNIMASK, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"omnimask {args[0]} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def logged_losses(run_dir: Path) -> list[float]:
    """The training losses a run logged to its metrics.csv, in step order."""
    import csv

    with open(run_dir / "metrics.csv") as f:
        return [float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]


def pretrain_briefly(
    recipe: str,
    data_path: str | Path,
    cwd: Path,
    batch_size: int,
    steps: int = 40,
    picture: bool = True,
    overrides: tuple[str, ...] = (),
) -> Path:
    """``omnimask pretrain RECIPE`` for ``steps`` steps through the CLI; asserts the logged loss falls
    and (``picture``) a reconstruction picture is written; returns the run directory."""
    name = f"brief-{recipe}"
    run_cli(
        [
            "pretrain",
            recipe,
            f"data.path={data_path}",
            f"data.batch_size={batch_size}",
            f"trainer.max_steps={steps}",
            "trainer.log_every_n_steps=4",
            f"trainer.checkpoint_every_n_steps={steps}",
            "optim.warmup_steps=4",
            *overrides,
            "--name",
            name,
        ],
        cwd,
    )
    run_dir = cwd / "runs" / name
    losses = logged_losses(run_dir)
    assert len(losses) >= steps // 4 - 1 and sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses
    assert (run_dir / "reconstruction.png").is_file() == picture
    return run_dir


def overfit(model, batch: dict, *, steps: int, lr: float) -> list[float]:
    """``steps`` AdamW steps of ``model`` on the one ``batch``; the loss of each step (before it)."""
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def photo_like(g: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth RGB image with some texture (gradients + blobs + noise), uint8 [h, w, 3]."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        fx, fy, ph = g.uniform(0.005, 0.05, 2).tolist() + [g.uniform(0, 6.28)]
        img[..., c] = 127 + 100 * np.sin(fx * x + fy * y + ph)
    for _ in range(3):
        cy, cx, r = g.uniform(0, h), g.uniform(0, w), g.uniform(5, max(6, min(h, w) / 3))
        img[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = g.uniform(0, 255, 3)
    img += g.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_image_folder(root: Path, n_good: int = 24, seed: int = 0, with_bad: bool = True) -> dict[str, int]:
    """Class folders of JPEG/PNG/WebP images of varied sizes and modes, plus broken files.

    Returns counts: ``good``, ``bad``, ``total``.
    """
    g = np.random.default_rng(seed)
    classes = ["cats", "dogs", "misc/deep"]
    for i in range(n_good):
        folder = root / classes[i % len(classes)]
        folder.mkdir(parents=True, exist_ok=True)
        h, w = int(g.integers(40, 200)), int(g.integers(40, 200))
        img = Image.fromarray(photo_like(g, h, w))
        kind = i % 6
        if kind == 0:
            img.save(folder / f"img{i}.png")
        elif kind == 1:
            img.save(folder / f"img{i}.webp", quality=90)
        elif kind == 2:
            img.convert("L").save(folder / f"img{i}.jpg", quality=90)
        elif kind == 3:
            img.convert("CMYK").save(folder / f"img{i}.jpeg", quality=90)
        elif kind == 4:
            img.convert("RGBA").save(folder / f"img{i}.png")
        else:
            img.save(folder / f"img{i}.JPG", quality=90)
    bad = 0
    if with_bad:
        broken = root / "broken"
        broken.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        Image.fromarray(photo_like(g, 120, 160)).save(buf, format="JPEG", quality=90)
        (broken / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
        (broken / "empty.png").write_bytes(b"")
        (broken / "text_named.jpg").write_bytes(b"this is not a jpeg at all\n" * 10)
        (broken / "readme.txt").write_text("notes\n")
        Image.fromarray(photo_like(g, 4, 300)).save(broken / "sliver.png")  # below min_side
        bad = 5
    return {"good": n_good, "bad": bad, "total": n_good + bad}


@pytest.fixture(scope="module")
def ray_local():
    """A real local Ray instance (2 CPUs) for a module's tests that run Ray jobs in-process."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def preprocessed(tmp_path_factory, modality: str, make_folder, samples_per_shard: int = 4):
    """``(root, counts, manifest)``: a folder made by ``make_folder(root / "raw")``, preprocessed into ``root / "shards"``."""
    from omnimask.data.preprocess import preprocess

    root = tmp_path_factory.mktemp(modality)
    counts = make_folder(root / "raw")
    return root, counts, preprocess(modality, root / "raw", root / "shards", samples_per_shard=samples_per_shard, num_cpus=2)


@pytest.fixture(scope="session")
def image_dataset(tmp_path_factory):
    """A preprocessed WebDataset shard directory over a mixed folder (session-wide, read-only)."""
    from omnimask.data.preprocess import preprocess

    root = tmp_path_factory.mktemp("images")
    counts = make_image_folder(root / "raw", n_good=30)
    out = root / "shards"
    manifest = preprocess("image", root / "raw", out, samples_per_shard=8, num_cpus=2)  # its own Ray unless one runs
    return {"raw": root / "raw", "shards": out, "manifest": manifest, "counts": counts}


# --------------------------------------------------------------------------- markers

SLOW_FILES = frozenset(
    {
        # seconds of one process's --durations on the 2-core VM while another suite ran (about twice an idle run's)
        "test_benchmarks.py",  # 590: gpu_check's training steps on the CPU 460, the attention A/B 90
        "test_fuzz.py",  # 110: every modality's mutants through ingest and decode
        "test_examples.py",  # 70: examples/mae_in_a_loop.py trains
        "test_fidelity_mae.py",  # 140: ViT-B MAE and AudioMAE against the reference code (the tiny goldens are in it too)
        "test_fidelity_pointmae.py",  # 95: the full Point-MAE against the reference code
        "test_fidelity_videomae.py",  # 80: ViT-B VideoMAE against the reference code
    }
)
"""Test files that take long without starting Ray (every test in them is ``slow``), measured with ``--durations``.
The fidelity files of ESM-2 and GraphMAE (30 and 20 s) stay in the quick run: the reference comparisons of two
modalities, beside test_conformance.py's golden training losses of every tiny recipe."""

RAY_CALLS = frozenset({"pretrain", "ray_session"})
"""Functions (by name) that start Ray, or join one: ``omnimask.train.pretrain.pretrain``, ``ray_env.ray_session``;
``ray.init`` and ``preprocess`` are matched on their own (see :func:`starts_ray_here`)."""

RAY_COMMANDS = ("pretrain", "preprocess", "demo", "benchmarks.run")
"""Words of a command line (``omnimask pretrain ...``, ``python -m benchmarks.run``) whose process starts Ray;
``ray start`` is matched on its own."""


def call_name(call: ast.Call) -> str:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def constants(node: ast.AST) -> list[str]:
    """The string constants of a literal list or tuple (a command line's fixed words), in order."""
    if not isinstance(node, (ast.List, ast.Tuple)):
        return []
    return [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]


def starts_ray_here(node: ast.AST) -> bool:
    """Whether one call or command line starts (or joins) Ray by itself: ``ray.init``, :data:`RAY_CALLS`,
    ``preprocess`` on its default executor (Ray; ``executor="processes"`` is a local process pool), a literal
    command line (a list or tuple, wherever it is written) of :data:`RAY_COMMANDS` (``omnimask preprocess
    --executor processes`` excepted; ``--print-config`` only prints) or ``ray start``."""
    if isinstance(node, ast.Call):
        name = call_name(node)
        if name == "init" and isinstance(node.func, ast.Attribute) and getattr(node.func.value, "id", "") == "ray":
            return True
        if name == "preprocess":
            executor = next((k.value for k in node.keywords if k.arg == "executor"), None)
            return not (isinstance(executor, ast.Constant) and executor.value == "processes")
        return name in RAY_CALLS
    words = constants(node)
    if "start" in words and ("--head" in words or "--address" in words):  # ray start (its path is not a constant)
        return True
    command = next((w for w in words if w in RAY_COMMANDS), None)
    if command is None or "--print-config" in words:
        return False
    return not (command == "preprocess" and "--executor" in words and "processes" in words)


TESTS_DIR = Path(__file__).resolve().parent
_starts_ray: dict[FunctionType, bool] = {}


def starts_ray(fn: object) -> bool:
    """Whether ``fn`` (a test, a fixture or a helper of this folder) starts Ray: one of its calls or command lines
    does (:func:`starts_ray_here`), or it calls a function of this folder that does, looked up in ``fn``'s module
    (``pretrain_briefly`` runs ``omnimask pretrain``; a module's dataset fixture calls ``preprocessed``).
    A reading of the source, not a run: a call that would fail before Ray starts counts too."""
    fn = inspect.unwrap(fn)  # type: ignore[arg-type]  # tests, fixtures and helpers arrive typed as plain objects
    if not isinstance(fn, FunctionType) or not Path(fn.__code__.co_filename).resolve().is_relative_to(TESTS_DIR):
        return False
    if fn not in _starts_ray:
        _starts_ray[fn] = False  # a recursive helper is not looked at twice
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
        except (OSError, TypeError, SyntaxError):
            return False
        nodes = list(ast.walk(tree))
        _starts_ray[fn] = any(starts_ray_here(node) for node in nodes) or any(
            starts_ray(fn.__globals__.get(node.func.id)) for node in nodes if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        )
    return _starts_ray[fn]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark a test ``ray`` when it starts Ray: its own code, a helper it calls or any fixture it uses (with the
    fixtures those use) starts it (:func:`starts_ray`): ``ray_local`` (``ray.init``), ``image_dataset`` and the
    modules' dataset fixtures (``preprocess`` on Ray), ``pretrain_briefly`` and ``run_cli`` of ``pretrain``/
    ``preprocess``/``demo`` (a CLI process that starts its own), test_jobs' ``ray start`` head. ``slow``: a
    ``ray`` test (starting Ray costs seconds, a run tens) or one in :data:`SLOW_FILES`."""
    for item in items:
        if not isinstance(item, pytest.Function):
            continue
        defs = item._fixtureinfo.name2fixturedefs
        fixtures = [d.func for name in item.fixturenames for d in defs.get(name, ())]
        if starts_ray(item.function) or any(starts_ray(f) for f in fixtures):
            item.add_marker(pytest.mark.ray)
            item.add_marker(pytest.mark.slow)
        elif item.path.name in SLOW_FILES:
            item.add_marker(pytest.mark.slow)
