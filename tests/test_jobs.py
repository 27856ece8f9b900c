"""A real Ray head with its dashboard; pretraining submitted as Ray jobs (Jobs SDK and `omnimask submit`)."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import make_image_folder
from omnimask.cli.submit import submit_job

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def head():
    """`ray start --head --block` on free ports; SIGTERM stops it with every process it started."""
    # every port its own: Ray's fixed defaults (the agent's 52365, the client server's 10001) may be held by
    # another Ray instance on the machine, a test running alongside (pytest -n) included; an agent that
    # cannot bind its port leaves the head without job submission ("No available agent")
    port, dash, agent, client = free_port(), free_port(), free_port(), free_port()
    temp = tempfile.mkdtemp(prefix="rayj", dir="/tmp")
    # Ray 2.60 drains a node on SIGTERM for up to 30 s, waiting on leases the finished jobs' idle workers
    # still hold: no drain, so that the teardown below takes seconds
    env = dict(
        os.environ, RAY_AUTH_MODE="disabled", PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0"
    )
    proc = subprocess.Popen(
        [
            str(BIN / "ray"),
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=true",
            f"--dashboard-port={dash}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-agent-listen-port={agent}",
            f"--ray-client-server-port={client}",
            "--disable-usage-stats",
            f"--temp-dir={temp}",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    address = f"http://127.0.0.1:{dash}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{address}/api/version", timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("the Ray head did not come up")
            time.sleep(1)
    yield address
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
    left = subprocess.run(["pgrep", "-f", temp], capture_output=True, text=True).stdout.split()
    for pid in left:
        os.kill(int(pid), signal.SIGKILL)
    assert not left, f"Ray processes outlived the head: {left}"


def wait_for(client, job: str, seconds: float = 300):
    from ray.job_submission import JobStatus

    deadline = time.monotonic() + seconds
    while (status := client.get_job_status(job)) not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
        assert time.monotonic() < deadline, f"job still {status}"
        time.sleep(2)
    return status


@pytest.fixture(scope="module")
def shards(tmp_path_factory, head):
    """The dataset is preprocessed by a Ray job on the head (RAY_ADDRESS is set inside jobs)."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    root = tmp_path_factory.mktemp("jobs")
    counts = make_image_folder(root / "raw", n_good=16, seed=9)
    client = JobSubmissionClient(head)
    job = submit_job(
        client, entrypoint=f"omnimask preprocess image --input {root / 'raw'} --output {root / 'shards'} --samples-per-shard 8"
    )
    assert wait_for(client, job) == JobStatus.SUCCEEDED, client.get_job_logs(job)[-3000:]
    logs = client.get_job_logs(job)
    assert "joined the Ray cluster" in logs
    assert f"{counts['total']} inputs -> {counts['good']} samples" in logs
    return root


def overrides(root: Path, run_dir: Path) -> list[str]:
    return [
        f"data.path={root / 'shards'}",
        f"run.dir={run_dir}",
        "model.tokenizer.image_size=32",
        "model.encoder.depth=1",
        "model.head.depth=1",
        "data.batch_size=4",
        "data.num_workers=0",
        "trainer.max_steps=4",
        "trainer.checkpoint_every_n_steps=2",
        "trainer.log_every_n_steps=2",
    ]


def test_pretrain_job_through_the_jobs_sdk(head, shards, tmp_path):
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(head)
    entry = " ".join(["omnimask", "pretrain", "mae_image_tiny", *overrides(shards, tmp_path), "--name", "sdk"])
    job = submit_job(client, entrypoint=entry)
    assert wait_for(client, job) == JobStatus.SUCCEEDED, client.get_job_logs(job)[-3000:]
    assert (tmp_path / "sdk" / "checkpoint-step0000004" / "checkpoint.ckpt").is_file()
    assert "trained 4 steps" in client.get_job_logs(job)


def test_omnimask_submit_streams_logs_and_returns_status(head, shards, tmp_path):
    """--address wins over a RAY_ADDRESS left set (which the Jobs SDK alone would prefer): here a dead one."""
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_ADDRESS=f"http://127.0.0.1:{free_port()}")
    cmd = [
        sys.executable,
        "-m",
        "omnimask.cli.main",
        "submit",
        "mae_image_tiny",
        *overrides(shards, tmp_path),
        "--name",
        "cli",
        "--address",
        head,
        "--timeout",
        "300",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "trained 4 steps" in proc.stdout and "job status: SUCCEEDED" in proc.stdout
    assert (tmp_path / "cli" / "checkpoint-step0000004" / "checkpoint.ckpt").is_file()

    bad = subprocess.run(
        [*cmd[:-6], "trainer.max_steps=4", "data.path=/nonexistent", "--name", "bad", "--address", head, "--timeout", "300"],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert bad.returncode == 1 and "job status: FAILED" in bad.stdout


class Proxy:
    """A TCP forwarder from a free port of its own to ``127.0.0.1:target``; :meth:`cut` closes it and every
    connection through it, as a network that loses the cluster would."""

    def __init__(self, target: int):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.target, self.connections = target, []
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                near, _ = self.listener.accept()
            except OSError:  # cut
                return
            far = socket.create_connection(("127.0.0.1", self.target))
            self.connections += [near, far]
            for src, dst in ((near, far), (far, near)):
                threading.Thread(target=self.pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass

    def cut(self) -> None:
        for s in [self.listener, *self.connections]:
            try:
                s.shutdown(socket.SHUT_RDWR)  # wakes the threads blocked in accept and recv
            except OSError:
                pass
            s.close()


def test_omnimask_submit_that_loses_the_cluster_names_the_job_in_one_line(head, shards, tmp_path):
    from ray.job_submission import JobStatus, JobSubmissionClient

    proxy = Proxy(int(head.rsplit(":", 1)[1]))
    address = f"http://127.0.0.1:{proxy.port}"
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    cmd = [
        sys.executable,
        "-m",
        "omnimask.cli.main",
        "submit",
        "mae_image_tiny",
        *overrides(shards, tmp_path),
        "--name",
        "lost",
        "--address",
        address,
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        err = []
        for line in proc.stderr:
            err.append(line)
            if "submitted job" in line:
                break
        assert err and "submitted job" in err[-1], "".join(err)  # it ended before submitting
        job = err[-1].split("submitted job ", 1)[1].split()[0]
        proxy.cut()
        err += proc.stderr.readlines()
        assert proc.wait(timeout=120) == 2, "".join(err)
    finally:
        proc.kill()
        proxy.cut()
    assert "Traceback" not in "".join(err), "".join(err)
    assert err[-1].strip() == (
        f"omnimask submit: error: lost the connection to the Ray cluster at {address} after submitting "
        f"job {job}: Connection refused. The job may still be running: ray job status {job} "
        f"--address {address}"
    )
    client = JobSubmissionClient(head)  # the job went on without the submitter
    client.stop_job(job)
    assert wait_for(client, job) in (JobStatus.STOPPED, JobStatus.SUCCEEDED)


def test_ray_job_submit_cli_with_working_dir(head, shards, tmp_path):
    """The README's command: `ray job submit --working-dir my_recipes -- omnimask pretrain mae_big.yaml ...`, a
    recipe of one's own (based on a built-in one) uploaded with the job."""
    job_dir = tmp_path / "my_recipes"
    job_dir.mkdir()
    (job_dir / "mine.yaml").write_text("base: mae_image_tiny.yaml\ndescription: a recipe of my own\n")
    env = dict(os.environ, RAY_AUTH_MODE="disabled", PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    cmd = [
        str(BIN / "ray"),
        "job",
        "submit",
        "--address",
        head,
        "--working-dir",
        str(job_dir),
        "--",
        "omnimask",
        "pretrain",
        "mine.yaml",
        *overrides(shards, tmp_path),
        "--name",
        "raycli",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "trained 4 steps" in proc.stdout and "succeeded" in proc.stdout.lower()
    assert (tmp_path / "raycli" / "checkpoint-step0000004" / "checkpoint.ckpt").is_file()
    assert "description: a recipe of my own" in (tmp_path / "raycli" / "config.yaml").read_text()


def test_ray_job_submit_trains_with_the_example_plugin(head, shards, tmp_path):
    """The plugin's components resolve on the cluster through their entry points: nothing is uploaded."""
    recipe = Path(__file__).resolve().parent.parent / "examples" / "ringmask" / "ring_sobel_tiny.yaml"
    env = dict(os.environ, RAY_AUTH_MODE="disabled", PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    cmd = [
        str(BIN / "ray"),
        "job",
        "submit",
        "--address",
        head,
        "--",
        "omnimask",
        "pretrain",
        str(recipe),
        *overrides(shards, tmp_path),
        "--name",
        "plugin",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "trained 4 steps" in proc.stdout and "succeeded" in proc.stdout.lower()
    config = (tmp_path / "plugin" / "config.yaml").read_text()
    assert "name: ring" in config and "name: sobel" in config
