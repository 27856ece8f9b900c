"""File names that are not UTF-8: Linux names are bytes, and Python hands such names over with surrogate
escapes. Every modality ingests (or quarantines) such files and finishes the job; the manifest, the
quarantine list and the samples' metadata stay JSON from which the exact bytes of the name come back."""

import json
import os
from pathlib import Path

import pytest

from conftest import OMNIMASK
from omnimask.cli.demo import DEMOS
from omnimask.core import registry
from omnimask.data.preprocess import preprocess
from omnimask.io.formats import iter_shard
from omnimask.io.manifest import MANIFEST, QUARANTINE, Manifest, read_quarantine

ODD = b"-\xff\xfe"  # not UTF-8 in any position


def rename_everything(root: Path) -> None:
    """Put :data:`ODD` into the name of every file and folder under ``root`` (a TU folder's files keep
    their names: its folder is renamed)."""
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root), topdown=False):
        tu_folder = any(f.endswith(b"_A.txt") for f in filenames)
        for name in [] if tu_folder else filenames:
            stem, dot, ext = name.rpartition(b".")
            os.rename(os.path.join(dirpath, name), os.path.join(dirpath, stem + ODD + dot + ext if dot else name + ODD))
        for name in dirnames:
            os.rename(os.path.join(dirpath, name), os.path.join(dirpath, name + ODD))


def file_of(root: Path, source: str) -> bytes:
    """The bytes path of the input a ``source`` (``rel/path`` or ``rel/path#record``) names."""
    return os.path.join(os.fsencode(root), os.fsencode(source.split("#", 1)[0]))


@pytest.mark.parametrize("modality", sorted(DEMOS))
def test_every_modality_ingests_files_whose_names_are_not_utf8(tmp_path, modality):
    src, out = tmp_path / "in", tmp_path / "out"
    registry.lookup("modality", modality)().example_inputs(src, 4)
    listed = sum(len(files) for _, _, files in os.walk(src))
    rename_everything(src)
    m = preprocess(modality, src, out, samples_per_shard=64, executor="processes", num_cpus=1)

    assert m.num_inputs == m.num_samples + m.num_quarantined and m.num_samples > 0
    for text in ((out / MANIFEST).read_bytes(), (out / QUARANTINE).read_bytes()):
        text.decode("ascii")  # the escapes are ASCII: valid UTF-8 for any reader
    assert Manifest.load(out) == m
    quarantined = read_quarantine(out)
    kept = [json.loads(members["json"])["source"] for shard in m.shards for _, members in iter_shard(m.format, out / shard.path)]
    assert len(kept) == m.num_samples and len(quarantined) == m.num_quarantined
    sources = kept + [q["source"].split(" (after ", 1)[0] for q in quarantined]
    for source in sources:  # each name comes back to the bytes of a file on disk
        assert ODD in os.fsencode(source), source
        assert os.path.lexists(file_of(src, source)), source
    assert len({file_of(src, s) for s in sources}) <= listed
    assert all("Unicode" not in q["reason"] for q in quarantined), quarantined
    assert all(ODD in os.fsencode(c) for c in m.classes)


def test_the_cli_prints_names_that_are_not_utf8_escaped(tmp_path):
    import subprocess

    src, out = tmp_path / "in", os.path.join(os.fsencode(tmp_path), b"out" + ODD)
    registry.lookup("modality", "image")().example_inputs(src, 2)
    rename_everything(src)
    env = dict(os.environ, RAY_AUTH_MODE="disabled", LC_ALL="C.UTF-8", PYTHONIOENCODING="utf-8")
    proc = subprocess.run(
        [*OMNIMASK, "preprocess", "image", "--input", str(src), "--output", out, "--executor", "processes", "--num-cpus", "1"],
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    assert b"out-\\xff\\xfe/manifest.json" in proc.stdout  # shown escaped, not a crash
    assert Manifest.load(os.fsdecode(out)).num_samples == 2
