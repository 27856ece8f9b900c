"""Audio (AudioMAE): real encoded files (soundfile, PyAV), preprocessing with quarantine, the kaldi
filterbank against torchaudio's reference call, masks, statistics, and the tiny recipe via the CLI."""

import io
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image
from torchaudio.compliance import kaldi

from conftest import OMNIMASK, preprocessed, pretrain_briefly, run_cli
from omnimask.core.config import DataConfig, load_recipe
from omnimask.core.interfaces import TokenLayout
from omnimask.core.recipe import MaskedModel, Recipe
from omnimask.data.loader import build_loader
from omnimask.io.formats import iter_shard
from omnimask.io.manifest import read_quarantine
from omnimask.modalities.audio.decode import AudioAugmentConfig, AudioDecoder
from omnimask.modalities.audio.examples import synth, write_audio
from omnimask.modalities.audio.maskers import TimeFrequencyMasker
from omnimask.modalities.audio.tokenizer import AudioFbankTokenizer


def reference_fbank(wave: np.ndarray) -> torch.Tensor:
    """AudioMAE's ``_wav2fbank`` + normalisation, written out with the reference arguments."""
    w = torch.from_numpy(wave)[None]
    w = w - w.mean()
    fbank = kaldi.fbank(
        w, htk_compat=True, sample_frequency=16000, use_energy=False, window_type="hanning", num_mel_bins=128, dither=0.0, frame_shift=10
    )
    p = 1024 - fbank.shape[0]
    fbank = torch.nn.ZeroPad2d((0, 0, 0, p))(fbank) if p > 0 else fbank[:1024]
    return (fbank - -4.2677393) / (4.5689974 * 2)


@pytest.mark.parametrize("seconds", [3.0, 12.5])  # padded, and cut
def test_fbank_tokens_match_the_reference_filterbank(seconds):
    """The loader's decoder and the tokenizer give AudioMAE's ``_wav2fbank`` of the whole file: its mean
    removed over the whole file (here a 12.5 s clip whose second half has another DC offset, so the
    window's mean is not the file's), then the filterbank, then the first 1024 frames."""
    from omnimask.modalities.audio.decode import AudioAugmentConfig, AudioDecoder

    tok = AudioFbankTokenizer(AudioFbankTokenizer.Config())
    assert tok.layout == TokenLayout((64, 8), 256)
    wave = synth("chirp", seconds, 16000, np.random.default_rng(0)) + 0.05  # a DC offset, removed by both
    wave[len(wave) // 2 :] += 0.2
    flac = io.BytesIO()
    sf.write(flac, wave, 16000, format="FLAC")
    decoded, _ = sf.read(io.BytesIO(flac.getvalue()), dtype="float32")
    decoder = AudioDecoder(AudioAugmentConfig(random_crop=False), 16000, tok.samples_needed)
    tokens = tok(decoder({"flac": flac.getvalue()}, seed=0))
    assert tokens.shape == (512, 256) and tokens.dtype == torch.float32
    ref = reference_fbank(decoded)
    assert torch.allclose(tok.spectrogram(tokens[None])[0], ref, rtol=0, atol=1e-6)
    # patches are time-major with values ordered (time, frequency), as AudioMAE's patchify
    t, f = 5, 3
    assert torch.allclose(tokens[t * 8 + f], ref[16 * t : 16 * t + 16, 16 * f : 16 * f + 16].reshape(-1), atol=1e-5)


def test_time_frequency_masks_hide_whole_rows_and_columns():
    layout = TokenLayout((64, 8), 256)
    masker = TimeFrequencyMasker(TimeFrequencyMasker.Config(time_ratio=0.7, freq_ratio=0.3))
    assert masker.num_masked(layout) == 512 - 19 * 5 == 417
    for seed in range(20):
        m = torch.as_tensor(masker(layout, seed)).reshape(64, 8)
        assert int(m.sum()) == 417
        visible = ~m
        rows, cols = visible.any(1), visible.any(0)
        assert int(rows.sum()) == 19 and int(cols.sum()) == 5
        # visible exactly where a kept row meets a kept column: whole rows and columns hidden
        assert torch.equal(visible, rows[:, None] & cols[None, :])
        assert np.array_equal(m.reshape(-1).numpy(), masker(layout, seed))
    assert not np.array_equal(masker(layout, 0), masker(layout, 1))


def test_decoder_crops_long_clips_and_applies_roll_mag():
    wave = synth("notes", 5.0, 16000, np.random.default_rng(1))
    buf = io.BytesIO()
    sf.write(buf, wave, 16000, format="FLAC")
    members = {"flac": buf.getvalue()}
    tok = AudioFbankTokenizer(AudioFbankTokenizer.Config(target_length=256))
    crop = AudioDecoder(AudioAugmentConfig(), 16000, tok.samples_needed)
    a, b = crop(members, 1), crop(members, 2)
    assert a.shape == b.shape == (tok.samples_needed,) == (400 + 160 * 255,)
    assert tok.fbank(a).shape[0] == 256
    assert np.array_equal(a, crop(members, 1)) and not np.array_equal(a, b)
    start = AudioDecoder(AudioAugmentConfig(random_crop=False), 16000, tok.samples_needed)(members, 1)
    decoded, _ = sf.read(io.BytesIO(members["flac"]), dtype="float32")
    assert np.allclose(start, (decoded - decoded.mean())[: tok.samples_needed], atol=1e-6)  # the file's mean removed
    gained = AudioDecoder(AudioAugmentConfig(random_crop=False, roll_mag=True), 16000, tok.samples_needed)(members, 1)
    gain = np.abs(gained).max() / np.abs(start).max()
    assert 0.5 <= gain <= 1.5 and np.allclose(gained, start * gain, atol=1e-5)  # AudioMAE's roll_mag: a gain only
    rolled = AudioDecoder(AudioAugmentConfig(random_crop=False, roll=True), 16000, tok.samples_needed)(members, 1)
    assert not np.allclose(rolled, start) and np.allclose(np.sort(rolled), np.sort(start))  # a rotation


def make_audio_folder(root: Path) -> dict[str, int]:
    """Tones and chirps at several rates and channel counts in five formats, silence, broken files."""
    g = np.random.default_rng(0)
    specs = [
        ("tone", 16000, 1, ".wav"),
        ("chirp", 44100, 2, ".wav"),
        ("tone", 22050, 1, ".flac"),
        ("chirp", 48000, 2, ".flac"),
        ("notes", 8000, 1, ".ogg"),
        ("tone", 44100, 2, ".mp3"),
        ("chirp", 22050, 1, ".m4a"),
        ("bursts", 32000, 1, ".wav"),
        ("notes", 16000, 2, ".flac"),
        ("tone", 48000, 1, ".ogg"),
    ]
    for i, (kind, rate, channels, ext) in enumerate(specs):
        x = synth(kind, 1.0 + 0.25 * i, rate, g)
        write_audio(root / "good" / f"{kind}{i}_{rate}{ext}", np.stack([x, 0.5 * x], 1) if channels == 2 else x, rate)
    write_audio(root / "good" / "silence.wav", np.zeros(8000, np.float32), 8000)
    bad = root / "bad"
    bad.mkdir(parents=True)
    wav = (root / "good" / "tone0_16000.wav").read_bytes()
    (bad / "header_only.wav").write_bytes(wav[:44])
    (bad / "empty.flac").write_bytes(b"")
    (bad / "random.mp3").write_bytes(g.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    (bad / "text.ogg").write_text("not audio\n" * 20)
    return {"good": len(specs) + 1, "bad": 4}


@pytest.fixture(scope="module")
def audio_shards(tmp_path_factory):
    return preprocessed(tmp_path_factory, "audio", make_audio_folder)


def test_preprocess_audio_accounts_for_every_file_and_resamples(audio_shards):
    root, counts, m = audio_shards
    assert (m.num_inputs, m.num_samples, m.num_quarantined) == (counts["good"] + counts["bad"], counts["good"], counts["bad"])
    reasons = {q["source"]: q["reason"] for q in read_quarantine(root / "shards")}
    assert set(reasons) == {"bad/header_only.wav", "bad/empty.flac", "bad/random.mp3", "bad/text.ogg"}
    assert reasons["bad/empty.flac"] == "empty file"
    assert reasons["bad/header_only.wav"] == "no audio samples" or "not decodable" in reasons["bad/header_only.wav"]
    assert all(r.startswith("not decodable audio") for s, r in reasons.items() if s in ("bad/random.mp3", "bad/text.ogg"))
    metas = {}
    for shard in m.shards:
        for _, members in iter_shard("webdataset", root / "shards" / shard.path):
            meta = json.loads(members["json"])
            wave, rate = sf.read(io.BytesIO(members["flac"]), dtype="float32")
            assert rate == 16000 and wave.ndim == 1 and len(wave) == meta["num_samples"]
            metas[meta["source"]] = (meta, wave)
    assert len(metas) == counts["good"]
    silence, wave = metas["good/silence.wav"]
    assert silence["silent"] is True and silence["orig_sample_rate"] == 8000 and not wave.any()
    meta, wave = metas["good/chirp1_44100.wav"]
    assert (meta["orig_sample_rate"], meta["orig_channels"], meta["orig_format"]) == (44100, 2, "WAV")
    assert meta["duration"] == pytest.approx(1.25, abs=1e-3) and not meta["silent"]
    assert {metas[s][0]["orig_format"] for s in metas} >= {"WAV", "FLAC", "OGG", "mp3"}
    assert any(s.endswith(".m4a") for s in metas)
    # resampling keeps the pitch: a 44.1 kHz stereo tone keeps its spectral peak at 16 kHz
    src, src_rate = sf.read(root / "raw" / "good" / "tone2_22050.flac", dtype="float32")
    _, stored = metas["good/tone2_22050.flac"]
    peak = lambda x, r: np.argmax(np.abs(np.fft.rfft(x))) * r / len(x)  # noqa: E731  (a one-line helper for the assert below)
    assert peak(stored, 16000) == pytest.approx(peak(src, src_rate), abs=2.0)


def test_a_stereo_file_keeps_its_first_channel_as_audiomae_reads_it(tmp_path):
    """AudioMAE's kaldi.fbank reads channel 0 of the file; ``channels=mean`` down-mixes instead (here the
    two channels cancel out)."""
    from omnimask.modalities.audio.ingest import AudioIngestConfig, encode_audio_file

    x = synth("chirp", 0.5, 16000, np.random.default_rng(0)).astype(np.float32) * 0.5
    write_audio(tmp_path / "stereo.wav", np.stack([x, -x], 1), 16000)
    first = encode_audio_file(tmp_path / "stereo.wav", AudioIngestConfig())
    wave, _ = sf.read(io.BytesIO(first.payload), dtype="float32")
    assert np.abs(wave - x).max() < 1e-4 and first.meta["orig_channels"] == 2
    mixed = encode_audio_file(tmp_path / "stereo.wav", AudioIngestConfig(channels="mean"))
    assert not sf.read(io.BytesIO(mixed.payload), dtype="float32")[0].any()


def test_inspect_stats_computes_the_filterbank_mean_and_std(audio_shards, tmp_path):
    root, _, m = audio_shards
    out = run_cli(["inspect", str(root / "shards"), "--stats", "--recipe", "audiomae_tiny"], tmp_path).stdout
    line = next(x for x in out.splitlines() if x.startswith("stats"))
    mean, std = float(line.split("mean ")[1].split(",")[0]), float(line.split("std ")[1].split(" ")[0])
    tok = AudioFbankTokenizer(AudioFbankTokenizer.Config(target_length=256))
    values = []
    for shard in m.shards:
        for _, members in iter_shard("webdataset", root / "shards" / shard.path):
            wave, _ = sf.read(io.BytesIO(members["flac"]), dtype="float32")
            values.append(tok.fbank(wave[: tok.samples_needed]).reshape(-1))
    allv = torch.cat(values).double()
    assert mean == pytest.approx(float(allv.mean()), rel=1e-5) and std == pytest.approx(float(allv.std(unbiased=False)), rel=1e-5)
    assert f"model.tokenizer.mean={mean:.7g}" in out
    proc = subprocess.run(
        [*OMNIMASK, "inspect", str(root / "shards"), "--stats", "--recipe", "mae_image_tiny"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "--recipe mae_image_tiny is for image; " in proc.stderr and "holds audio samples" in proc.stderr


def test_loader_gives_audiomae_batches(audio_shards):
    root, counts, _ = audio_shards
    recipe = Recipe.from_config(load_recipe("audiomae_tiny", ["model.masker.name=time_freq"]))
    batches = list(build_loader(recipe, data=DataConfig(path=root / "shards", batch_size=4, num_workers=0), seed=0, epochs=1))
    assert len(batches) == -(-counts["good"] // 4)  # the last step of the epoch runs into the next one
    b = batches[0]
    assert b["tokens"].shape == (4, 128, 256) and b["tokens"].dtype == torch.float32
    assert b["num_hidden"] == 128 - int(16 * 0.3) * int(8 * 0.7) and MaskedModel.compact_target(b).shape == (4, b["num_hidden"], 256)
    masks = b["mask"].reshape(4, 16, 8)
    for m in masks:
        visible = ~m
        assert torch.equal(visible, visible.any(1)[:, None] & visible.any(0)[None, :])


def test_audiomae_tiny_pretrains_through_the_cli(audio_shards, tmp_path):
    root, _, _ = audio_shards
    run_dir = pretrain_briefly("audiomae_tiny", root / "shards", tmp_path, batch_size=4)
    grid = Image.open(run_dir / "reconstruction.png")
    # a row per sample: original | masked | reconstruction, each a 128-bin x 256-frame spectrogram
    assert grid.size == (3 * (256 + 2) + 2, 4 * (128 + 2) + 2)
