"""Preprocessing as a real Ray Data job over real encoded files, and reading the shards back
with three independent readers (webdataset, Ray Data, pyarrow)."""

import io
import json
import tarfile

import pyarrow.parquet as pq
import pytest
from PIL import Image

from conftest import make_image_folder
from omnimask.data.preprocess import OutputExistsError, preprocess
from omnimask.io.formats import ShardFile, iter_shard
from omnimask.io.manifest import Manifest, file_sha256, read_quarantine


def test_manifest_accounts_for_every_input(image_dataset):
    m, counts, out = image_dataset["manifest"], image_dataset["counts"], image_dataset["shards"]
    assert m.num_inputs == counts["total"]
    assert m.num_samples == counts["good"]
    assert m.num_quarantined == counts["bad"]
    assert m.num_inputs == m.num_samples + m.num_quarantined
    assert m.modality == "image" and m.format == "webdataset"
    assert m.classes == ["broken", "cats", "dogs", "misc/deep"]
    assert Manifest.load(out) == m
    reasons = {q["source"]: q["reason"] for q in read_quarantine(out)}
    assert set(reasons) == {"broken/truncated.jpg", "broken/empty.png", "broken/text_named.jpg", "broken/readme.txt", "broken/sliver.png"}
    assert reasons["broken/empty.png"] == "empty file"
    assert "truncated" in reasons["broken/truncated.jpg"]
    assert reasons["broken/text_named.jpg"] == "not a decodable image"
    assert "too small" in reasons["broken/sliver.png"]
    for shard in m.shards:
        path = out / shard.path
        assert path.name.startswith("shard-") and path.suffix == ".tar"
        assert shard.bytes == path.stat().st_size
        assert shard.sha256 == file_sha256(path)
        assert shard.num_samples == sum(1 for _ in iter_shard("webdataset", path))
    assert not list(out.glob(".*tmp*")), "temporary files left behind"


def test_samples_decode_and_keep_their_metadata(image_dataset):
    out, m = image_dataset["shards"], image_dataset["manifest"]
    sources = set()
    for shard in m.shards:
        for key, members in iter_shard("webdataset", out / shard.path):
            assert "." not in key
            meta = json.loads(members["json"])
            assert meta["key"] == key
            payload = members.get("jpg") or members.get("png")
            img = Image.open(io.BytesIO(payload))
            img.load()
            assert img.mode in ("RGB", "L") and img.size == (meta["width"], meta["height"])
            assert meta["label"] == meta["source"].rsplit("/", 1)[0]
            assert m.classes[meta["label_index"]] == meta["label"]
            sources.add(meta["source"])
    assert len(sources) == m.num_samples


def test_webdataset_shards_read_by_upstream_webdataset(image_dataset):
    import webdataset as wds

    out, m = image_dataset["shards"], image_dataset["manifest"]
    urls = [str(out / s.path) for s in m.shards]
    keys = []
    for sample in wds.WebDataset(urls, shardshuffle=False, nodesplitter=None, empty_check=False):
        assert ("jpg" in sample) != ("png" in sample)
        meta = json.loads(sample["json"])
        assert meta["key"] == sample["__key__"]
        keys.append(sample["__key__"])
    assert len(keys) == len(set(keys)) == m.num_samples


def test_webdataset_shards_read_by_ray_data(image_dataset, ray_local):
    import ray.data

    out, m = image_dataset["shards"], image_dataset["manifest"]
    ds = ray.data.read_webdataset([str(out / s.path) for s in m.shards], decoder=None)
    rows = ds.take_all()
    assert len(rows) == m.num_samples
    assert {json.loads(r["json"])["key"] for r in rows} == {r["__key__"] for r in rows}


def test_parquet_format_read_by_pyarrow(tmp_path, ray_local):
    counts = make_image_folder(tmp_path / "raw", n_good=12, seed=3)
    m = preprocess("image", tmp_path / "raw", tmp_path / "pq", fmt="parquet", samples_per_shard=5, options={"resize": 48})
    assert m.format == "parquet" and m.num_samples == counts["good"] and m.num_quarantined == counts["bad"]
    total = 0
    for shard in m.shards:
        table = pq.read_table(tmp_path / "pq" / shard.path)
        assert table.column_names == ["key", "ext", "data", "json"]
        assert table.num_rows == shard.num_samples
        for row in table.to_pylist():
            img = Image.open(io.BytesIO(row["data"]))
            assert min(img.size) <= 48  # --resize caps the short side
            assert json.loads(row["json"])["key"] == row["key"]
        total += table.num_rows
        shard_file = ShardFile("parquet", tmp_path / "pq" / shard.path)  # the loader's random access
        assert [shard_file[j] for j in reversed(range(len(shard_file)))] == list(iter_shard("parquet", tmp_path / "pq" / shard.path))[::-1]
    assert total == m.num_samples


def test_rerun_refuses_to_clobber_unless_overwrite(image_dataset, tmp_path, ray_local):
    make_image_folder(tmp_path / "raw", n_good=4, with_bad=False)
    first = preprocess("image", tmp_path / "raw", tmp_path / "out", samples_per_shard=2)
    again = preprocess("image", tmp_path / "raw", tmp_path / "out", samples_per_shard=2)  # same job: a no-op
    assert again.created_at == first.created_at and again.shards == first.shards
    with pytest.raises(OutputExistsError, match="--overwrite"):
        preprocess("image", tmp_path / "raw", tmp_path / "out")  # other arguments
    m = preprocess("image", tmp_path / "raw", tmp_path / "out", samples_per_shard=4, overwrite=True)
    assert len(m.shards) == 1 and sorted(p.name for p in (tmp_path / "out").glob("shard-*")) == ["shard-000000.tar"]


def test_same_inputs_give_identical_shards(tmp_path, ray_local):
    """Twice on Ray, and once on the local process pool (``executor="processes"``, no Ray)."""
    make_image_folder(tmp_path / "raw", n_good=10, with_bad=True)
    a = preprocess("image", tmp_path / "raw", tmp_path / "a", samples_per_shard=4)
    b = preprocess("image", tmp_path / "raw", tmp_path / "b", samples_per_shard=4)
    c = preprocess("image", tmp_path / "raw", tmp_path / "c", samples_per_shard=4, executor="processes", num_cpus=2)
    assert len(a.shards) == 3 and a.num_quarantined > 0
    for other in (b, c):
        assert [(s.path, s.sha256) for s in a.shards] == [(s.path, s.sha256) for s in other.shards]
        assert (other.num_inputs, other.num_quarantined) == (a.num_inputs, a.num_quarantined)
    assert read_quarantine(tmp_path / "c") == read_quarantine(tmp_path / "a")
    with pytest.raises(ValueError, match="unknown executor"):
        preprocess("image", tmp_path / "raw", tmp_path / "d", executor="threads")


def test_decompression_bomb_is_quarantined_without_decoding(tmp_path, ray_local):
    (tmp_path / "raw").mkdir()
    Image.new("L", (9000, 9000)).save(tmp_path / "raw" / "huge.png")  # 81 Mpx, compresses to a few KB
    Image.new("RGB", (64, 64), (10, 200, 30)).save(tmp_path / "raw" / "ok.png")
    m = preprocess("image", tmp_path / "raw", tmp_path / "out", options={"max_pixels": 50_000_000})
    assert m.num_samples == 1 and m.num_quarantined == 1
    assert "too large" in read_quarantine(tmp_path / "out")[0]["reason"]


def one_member_tar(path, name, data=b"", kind=tarfile.REGTYPE, linkname=""):
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo(name)
        info.size, info.type, info.linkname = len(data), kind, linkname
        tar.addfile(info, io.BytesIO(data) if data else None)
    return path


def test_unsafe_tar_members_are_refused(tmp_path):
    cases = [
        (one_member_tar(tmp_path / "dotdot.tar", "../escape.jpg", b"abc"), "unsafe path '../escape.jpg'"),
        (one_member_tar(tmp_path / "abs.tar", "/etc/evil.jpg", b"abc"), "unsafe path '/etc/evil.jpg'"),
        (one_member_tar(tmp_path / "empty.tar", "", b"x"), "unsafe path"),
        (one_member_tar(tmp_path / "link.tar", "000.jpg", kind=tarfile.SYMTYPE, linkname="/etc/passwd"), "non-regular member"),
    ]
    for path, message in cases:
        with pytest.raises(ValueError, match=message):
            list(iter_shard("webdataset", path))


def test_links_fifos_and_multi_picture_jpegs_are_accounted_for(tmp_path, ray_local):
    import os

    raw = tmp_path / "raw"
    make_image_folder(raw / "real", n_good=3, with_bad=False)
    os.symlink(raw / "real", raw / "linked")  # a symlinked folder: its files are inputs too
    os.symlink(raw / "real", raw / "real" / "loop")  # a link back into the tree is walked once
    os.symlink(tmp_path / "missing.jpg", raw / "dangling.jpg")
    os.mkfifo(raw / "pipe.jpg")
    first, second = Image.new("RGB", (64, 48), (200, 10, 10)), Image.new("RGB", (64, 48), (10, 10, 200))
    first.save(raw / "camera.jpg", format="MPO", save_all=True, append_images=[second])
    m = preprocess("image", raw, tmp_path / "out")
    reasons = {q["source"]: q["reason"] for q in read_quarantine(tmp_path / "out")}
    assert reasons == {"dangling.jpg": "not a regular file", "pipe.jpg": "not a regular file"}
    assert m.num_samples == 3 + 3 + 1 and m.num_inputs == m.num_samples + 2
    assert {c.split("/")[0] for c in m.classes} == {"linked", "real"}


def test_output_must_not_contain_the_input(tmp_path, ray_local):
    make_image_folder(tmp_path / "data" / "raw", n_good=2, with_bad=False)
    with pytest.raises(ValueError, match="must not contain"):
        preprocess("image", tmp_path / "data" / "raw", tmp_path / "data", overwrite=True)
    with pytest.raises(ValueError, match="must not contain"):
        preprocess("image", tmp_path / "data", tmp_path / "data" / "raw" / "out")


def test_overwrite_removes_only_what_preprocess_wrote(tmp_path, ray_local):
    make_image_folder(tmp_path / "raw", n_good=4, with_bad=False)
    preprocess("image", tmp_path / "raw", tmp_path / "out", samples_per_shard=1)
    (tmp_path / "out" / "notes.md").write_text("mine")
    preprocess("image", tmp_path / "raw", tmp_path / "out", samples_per_shard=4, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["manifest.json", "notes.md", "quarantine.jsonl", "shard-000000.tar"]


def test_inspect_verify_catches_a_flipped_byte_and_a_truncated_shard(image_dataset, tmp_path):
    import shutil
    import subprocess
    import sys

    copy = tmp_path / "copy"
    shutil.copytree(image_dataset["shards"], copy)
    cli = [sys.executable, "-m", "omnimask.cli.main", "inspect", str(copy)]
    ok = subprocess.run([*cli, "--verify"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    m = image_dataset["manifest"]
    assert f"samples      {m.num_samples} (of {m.num_inputs} inputs; {m.num_quarantined} quarantined)" in ok.stdout
    assert "verify       OK" in ok.stdout

    first, second = (copy / s.path for s in m.shards[:2])
    data = bytearray(first.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped bit pattern inside a payload: same size, same count
    first.write_bytes(bytes(data))
    second.write_bytes(second.read_bytes()[: second.stat().st_size // 2])
    bad = subprocess.run([*cli, "--verify"], capture_output=True, text=True)
    assert bad.returncode == 1
    assert f"{first.name}: sha256" in bad.stdout
    assert f"{second.name}: {second.stat().st_size} bytes, the manifest says" in bad.stdout
    assert "FAILED: " in bad.stdout
    summary_only = subprocess.run(cli, capture_output=True, text=True)
    assert summary_only.returncode == 0 and "verify" not in summary_only.stdout


def test_preprocessing_killed_mid_run_resumes_to_the_same_dataset(tmp_path):
    """SIGKILL the CLI after its first shards land, re-run the same command: the dataset equals
    an uninterrupted run's, shard for shard, and the local Ray of the killed run is gone."""
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import tempfile
    import time
    from pathlib import Path

    counts = make_image_folder(tmp_path / "raw", n_good=120, seed=4)
    ray_tmp = Path(tempfile.mkdtemp(prefix="rk", dir="/tmp"))  # short: Ray's socket paths have a length limit
    env = dict(os.environ, RAY_AUTH_MODE="disabled", TMPDIR=str(ray_tmp))

    def cmd(out):
        return [
            sys.executable,
            "-m",
            "omnimask.cli.main",
            "preprocess",
            "image",
            "--input",
            str(tmp_path / "raw"),
            "--output",
            str(out),
            "--samples-per-shard",
            "4",
            "--num-cpus",
            "1",
            "--resize",
            "64",
        ]

    proc = subprocess.Popen(cmd(tmp_path / "out"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list((tmp_path / "out").glob(".unit-*.json"))) < 3:
        assert proc.poll() is None, "preprocess finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "out" / "manifest.json").exists()
    done_before = len(list((tmp_path / "out").glob(".unit-*.json")))

    resumed = subprocess.run(cmd(tmp_path / "out"), env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    clean = subprocess.run(cmd(tmp_path / "clean"), env=env, capture_output=True, text=True, timeout=300)
    assert clean.returncode == 0, clean.stderr[-3000:]

    a, b = Manifest.load(tmp_path / "out"), Manifest.load(tmp_path / "clean")
    assert a.preprocess["resumed_units"] >= done_before >= 3
    assert [(s.path, s.num_samples, s.sha256) for s in a.shards] == [(s.path, s.num_samples, s.sha256) for s in b.shards]
    assert (a.num_inputs, a.num_samples, a.num_quarantined) == (counts["total"], counts["good"], counts["bad"])
    assert read_quarantine(tmp_path / "out") == read_quarantine(tmp_path / "clean")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in (tmp_path / "clean").iterdir())

    noop = subprocess.run(cmd(tmp_path / "out"), env=env, capture_output=True, text=True, timeout=300)
    assert noop.returncode == 0 and "nothing to do" in noop.stderr
    time.sleep(2)
    left = subprocess.run(["pgrep", "-f", str(ray_tmp)], capture_output=True, text=True).stdout.split()
    for pid in left:
        os.kill(int(pid), signal.SIGKILL)
    shutil.rmtree(ray_tmp, ignore_errors=True)
    assert not left, "processes of the killed run's Ray outlived it"
