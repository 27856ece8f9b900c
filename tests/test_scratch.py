"""A run's scratch folder: made and removed by the driver, used by each worker, and the temporary folder
around it left alone (even when nothing else is in it)."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from omnimask.data.scratch import run_scratch, temp_dir_for_processes, use_scratch


@pytest.fixture
def short_tmp():
    """An empty folder with a path short enough for the scratch folder (pytest's are too long)."""
    path = Path(tempfile.mkdtemp(prefix="om", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_scratch_folders_go_and_the_temporary_folder_stays(short_tmp, monkeypatch):
    base = short_tmp
    monkeypatch.setattr(tempfile, "tempdir", str(base))
    monkeypatch.setenv("TMPDIR", str(base))
    with run_scratch() as scratch:
        assert scratch.parent == base
        with use_scratch(scratch, 0) as mine:
            assert mine == scratch / "r0" and tempfile.gettempdir() == os.environ["TMPDIR"] == str(mine)
            (mine / "pymp-x").mkdir()
        assert tempfile.gettempdir() == os.environ["TMPDIR"] == str(base)
        assert not scratch.exists()  # the last rank out removed the empty run folder (a node other than the driver's)
    assert base.is_dir() and not list(base.iterdir())  # an empty temporary folder is not the run's to remove
    with run_scratch() as scratch:
        (scratch / "r1").mkdir()  # a rank Ray killed left its folder
    assert base.is_dir() and not list(base.iterdir())


def test_a_scratch_path_too_long_for_sockets_is_not_used(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    deep = tmp_path / ("d" * 80)
    with use_scratch(deep, 0) as mine:
        assert mine is None and tempfile.gettempdir() == str(tmp_path) and not deep.exists()


def test_processes_get_the_folder_and_ray_keeps_its_session_files_where_they_were(short_tmp, monkeypatch):
    from ray._common.utils import get_default_ray_temp_dir

    monkeypatch.setenv("TMPDIR", str(short_tmp))
    monkeypatch.delenv("RAY_TMPDIR", raising=False)
    ray_dir = get_default_ray_temp_dir()
    before = tempfile.gettempdir()
    with temp_dir_for_processes(short_tmp / "p"):
        assert os.environ["TMPDIR"] == str(short_tmp / "p") and tempfile.gettempdir() == before
        assert get_default_ray_temp_dir() == ray_dir  # Ray reads RAY_TMPDIR first
    assert os.environ["TMPDIR"] == str(short_tmp) and "RAY_TMPDIR" not in os.environ
    with temp_dir_for_processes(short_tmp / "q", this_process=True):
        assert tempfile.gettempdir() == str(short_tmp / "q")
    assert tempfile.gettempdir() == before
