"""Truncated videos are quarantined: real clips written with PyAV in containers that store no frame
count (Matroska, WebM, MPEG-TS), cut at the byte level, through the real ingest and pipeline."""

from collections import Counter
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from omnimask.core.interfaces import QuarantineError
from omnimask.data.preprocess import preprocess
from omnimask.io.manifest import read_quarantine
from omnimask.modalities.video.examples import write_video
from omnimask.modalities.video.ingest import VideoIngestConfig, encode_video_file

FRAMES, FPS = 50, 25  # a 2 s clip
CLIPS = {"clip.mkv": None, "vp8.webm": "libvpx", "vp9.webm": "libvpx-vp9", "clip.ts": None}
TS = 188  # bytes in a transport packet


def frames_64x48(num_frames: int = FRAMES, seed: int = 0) -> np.ndarray:
    """uint8 ``[T, 48, 64, 3]``: a textured disc crossing a drifting gradient, so that frames differ and code
    to packets of their own sizes (no photo to load: the file stays quick)."""
    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:48, 0:64]
    texture = g.integers(0, 64, (48, 64, 3))
    frames = np.empty((num_frames, 48, 64, 3), np.uint8)
    for t in range(num_frames):
        frame = np.stack([(xx * 4 + t * 3) % 256, (yy * 5 + t * 2) % 256, (xx + yy + t) % 256], -1) // 2 + texture
        frame[(xx - (t * 2) % 64) ** 2 + (yy - 24) ** 2 < 100] = (255, 200, 40)
        frames[t] = frame
    return frames


def write_clip(path: Path, frames: np.ndarray, *, times_ms: list[int], audio_seconds: float | None = None) -> None:
    """Matroska with H.264 (B-frames) at the given presentation times in ms (variable rate, any start), and
    an AAC track of ``audio_seconds`` interleaved with it when given."""
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        video.codec_context.time_base = Fraction(1, 1000)
        audio = container.add_stream("aac", rate=48000, layout="mono") if audio_seconds else None
        written = 0  # audio samples

        def audio_until(seconds: float) -> None:
            nonlocal written
            while audio is not None and written < seconds * 48000:
                chunk = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts = 48000, written
                container.mux(audio.encode(chunk))
                written += 1024

        for frame, ms in zip(frames, times_ms):
            picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
            picture.pts, picture.time_base = ms, Fraction(1, 1000)
            container.mux(video.encode(picture))
            audio_until(ms / 1000)
        container.mux(video.encode())
        if audio is not None:
            audio_until(audio_seconds)
            container.mux(audio.encode())


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, bytes]:
    """The bytes of 50-frame 64x48 clips, whole: H.264 MKV and TS, VP8 and VP9 WebM."""
    root = tmp_path_factory.mktemp("clips")
    frames = frames_64x48()
    for name, codec in CLIPS.items():
        write_video(root / name, frames, fps=FPS, codec=codec)
    return {name: (root / name).read_bytes() for name in CLIPS}


def ingest(tmp_path: Path, name: str, data: bytes, **options):
    path = tmp_path / name
    path.write_bytes(data)
    return encode_video_file(path, VideoIngestConfig(**options))


def quarantine_reason(tmp_path: Path, name: str, data: bytes, **options) -> str:
    with pytest.raises(QuarantineError) as caught:
        ingest(tmp_path, name, data, **options)
    return str(caught.value)


@pytest.mark.parametrize("name", ["clip.mkv", "vp8.webm", "vp9.webm"])
def test_a_matroska_or_webm_clip_cut_in_half_is_quarantined_and_the_whole_one_kept(tmp_path, clips, name):
    """Matroska stores no frame count, but its header's duration (2 s) survives the cut: the half
    that still decodes (about 1 s) is compared with it."""
    data = clips[name]
    enc = ingest(tmp_path, name, data)
    assert enc.meta["frames"] == FRAMES and enc.meta["duration"] == 2.0 and enc.payload == data
    reason = quarantine_reason(tmp_path, name, data[: len(data) // 2])
    assert reason.startswith("truncated: decoded ") and reason.endswith(" of the 2.00 s its video stream declares"), reason
    assert 0.5 < float(reason.split()[2]) < 1.5, reason


def test_the_option_truncation_tolerance_governs_the_duration_check(tmp_path, clips):
    half = clips["clip.mkv"][: len(clips["clip.mkv"]) // 2]
    assert ingest(tmp_path, "clip.mkv", half, truncation_tolerance=0.9).meta["frames"] < FRAMES // 2 + 4
    with pytest.raises(ValueError, match=r"truncation_tolerance must be in \[0, 1\), got 1.5"):
        VideoIngestConfig(truncation_tolerance=1.5)


def ts_packets(data: bytes) -> tuple[list[int], list[bool]]:
    """Per transport packet: its PID, and whether a PES (here: a frame) starts in it."""
    heads = [data[k : k + 3] for k in range(0, len(data), TS)]
    assert all(h[0] == 0x47 for h in heads)
    return [(h[1] & 0x1F) << 8 | h[2] for h in heads], [bool(h[1] & 0x40) for h in heads]


def ts_cut(data: bytes, *, inside_a_frame: bool) -> int:
    """A packet boundary past the middle where a video PES goes on (``inside_a_frame``) or starts."""
    pids, starts = ts_packets(data)
    video = Counter(pids).most_common(1)[0][0]
    return TS * next(k for k in range(len(pids) // 2, len(pids)) if pids[k] == video and starts[k] != inside_a_frame)


def test_an_mpegts_cut_inside_a_frame_is_quarantined_and_the_whole_one_kept(tmp_path, clips):
    """A TS declares no duration (FFmpeg reads one off the cut file's own last timestamps): a cut between
    two transport packets inside a frame leaves that frame's data short, and it decodes with errors."""
    data = clips["clip.ts"]
    enc = ingest(tmp_path, "clip.ts", data)
    assert enc.meta["frames"] == FRAMES and enc.meta["orig_format"] == "mpegts" and enc.ext == "mp4"
    reason = quarantine_reason(tmp_path, "clip.ts", data[: ts_cut(data, inside_a_frame=True)])
    assert reason.startswith("truncated: frame ") and reason.endswith(
        "at the end of the stream, decodes with errors (its data stops short)"
    )


def test_an_mpegts_that_ends_inside_a_transport_packet_is_quarantined(tmp_path, clips):
    """Cut 100 bytes into the packet that starts a frame: every frame before it is whole, and FFmpeg drops
    the partial packet without a word; only the file's length shows the cut."""
    data = clips["clip.ts"]
    cut = ts_cut(data, inside_a_frame=False) + 100
    reason = quarantine_reason(tmp_path, "clip.ts", data[:cut])
    assert reason == "truncated: the file ends 100 bytes into an MPEG-TS packet of 188"


def test_audio_longer_than_the_video_is_kept_and_a_cut_of_it_quarantined(tmp_path):
    """The container's 3 s cover the audio track: the 2 s video stream is measured against its own
    declared duration, the file's end against the audio's last packet."""
    write_clip(tmp_path / "av.mkv", frames_64x48(), times_ms=[40 * i for i in range(FRAMES)], audio_seconds=3.0)
    data = (tmp_path / "av.mkv").read_bytes()
    with av.open(tmp_path / "av.mkv") as c:
        assert c.duration / 1e6 == pytest.approx(3.0, abs=0.05)
    assert ingest(tmp_path, "av.mkv", data).meta["frames"] == FRAMES
    assert quarantine_reason(tmp_path, "av.mkv", data[: len(data) // 2]).endswith("of the 2.00 s its video stream declares")
    # cut where the video is whole and only the audio that outlasts it is lost
    reason = quarantine_reason(tmp_path, "av.mkv", data[: int(len(data) * 0.95)])
    assert reason.startswith("truncated: its streams hold ") and reason.endswith("its container declares"), reason


def test_a_variable_rate_clip_that_starts_late_is_kept_and_a_cut_of_it_quarantined(tmp_path):
    """Frames 20 or 100 ms apart from t = 1 s (Matroska's duration then counts from 0), with B-frames."""
    times = list(np.cumsum([1000] + [20 if i % 3 else 100 for i in range(FRAMES - 1)]))
    write_clip(tmp_path / "vfr.mkv", frames_64x48(seed=1), times_ms=[int(t) for t in times])
    data = (tmp_path / "vfr.mkv").read_bytes()
    with av.open(tmp_path / "vfr.mkv") as c:
        assert c.start_time == 1_000_000
        assert any(p.pts != p.dts for p in c.demux(video=0) if p.size)  # B-frames: decode order differs
    assert ingest(tmp_path, "vfr.mkv", data).meta["frames"] == FRAMES
    reason = quarantine_reason(tmp_path, "vfr.mkv", data[: len(data) // 2])
    assert reason.startswith("truncated: decoded "), reason


def test_preprocess_quarantines_the_cut_clips_with_their_reasons(tmp_path, clips):
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in ("clip.mkv", "vp8.webm", "clip.ts"):
        data = clips[name]
        (raw / name).write_bytes(data)
        cut = len(data) // 2 if not name.endswith(".ts") else ts_cut(data, inside_a_frame=False) + 100
        (raw / f"cut_{name}").write_bytes(data[:cut])
    m = preprocess("video", raw, tmp_path / "shards", samples_per_shard=8, executor="processes", num_cpus=1)
    assert (m.num_inputs, m.num_samples, m.num_quarantined) == (6, 3, 3)
    assert m.num_inputs == m.num_samples + m.num_quarantined
    reasons = {q["source"]: q["reason"] for q in read_quarantine(tmp_path / "shards")}
    assert set(reasons) == {"cut_clip.mkv", "cut_vp8.webm", "cut_clip.ts"}
    assert all(r.startswith("truncated: ") for r in reasons.values()), reasons
    assert "of the 2.00 s its video stream declares" in reasons["cut_clip.mkv"]
