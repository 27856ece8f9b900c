"""Audio tokenizer: AudioMAE's kaldi log-mel filterbank, normalised, in 16x16 patches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torchaudio.compliance import kaldi

from omnimask.core.interfaces import Tokenizer, TokenLayout
from omnimask.core.registry import register

AUDIOSET_MEAN = -4.2677393
AUDIOSET_STD = 4.5689974
FRAME_LENGTH_MS = 25.0  # kaldi's default window


def kaldi_fbank(waveform: torch.Tensor, sample_rate: int, num_mel_bins: int, frame_shift: float) -> torch.Tensor:
    """AudioMAE's filterbank of a mono waveform ``[S]``: ``[frames, num_mel_bins]``.

    The arguments are AudioMAE's (``htk_compat``, hanning window, no energy, no dither), kaldi's
    defaults otherwise (25 ms frames, pre-emphasis 0.97, ``snip_edges``, each frame's DC offset
    removed). AudioMAE removes the whole file's mean before; the loader's decoder does that
    (:class:`~omnimask.modalities.audio.decode.AudioDecoder`), before it cuts the window, so it is not
    done again here on the window.
    """
    w = waveform.float()[None]
    return kaldi.fbank(
        w,
        htk_compat=True,
        sample_frequency=sample_rate,
        use_energy=False,
        window_type="hanning",
        num_mel_bins=num_mel_bins,
        dither=0.0,
        frame_shift=frame_shift,
    )


@register("tokenizer", "audio_fbank")
class AudioFbankTokenizer(Tokenizer):
    """Mono waveform ``[S]`` (float, ``sample_rate``) -> float tokens ``[N, p*p]`` of the
    normalised filterbank on a ``(target_length / p, num_mel_bins / p)`` (time, frequency) grid.

    The filterbank ``[frames, mel]`` is zero-padded at the end or cut to
    ``target_length`` frames, normalised as ``(fbank - mean) / (2 * std)`` and cut into
    ``p x p`` patches, time-major with values ordered (time, frequency), as AudioMAE's
    ``patchify`` of its ``[1, 1024, 128]`` input: 64 x 8 = 512 tokens of 256 values by default.
    """

    @dataclass
    class Config:
        sample_rate: int = 16000
        num_mel_bins: int = 128
        target_length: int = 1024
        """Frames (10 ms each): 1024 for AudioSet's 10 s clips."""
        frame_shift: float = 10.0
        """Milliseconds between frames."""
        patch_size: int = 16
        mean: float = AUDIOSET_MEAN
        """Dataset mean of the filterbank (``omnimask inspect DIR --stats`` computes it)."""
        std: float = AUDIOSET_STD

        def __post_init__(self) -> None:
            if self.patch_size <= 0 or self.target_length % self.patch_size or self.num_mel_bins % self.patch_size:
                raise ValueError(
                    f"target_length ({self.target_length}) and num_mel_bins ({self.num_mel_bins}) "
                    f"must be multiples of patch_size ({self.patch_size})"
                )
            if self.std <= 0:
                raise ValueError(f"std must be > 0, got {self.std}")

    blank = 0.0

    def __init__(self, cfg: Config):
        self.cfg = cfg
        p = cfg.patch_size
        self.layout = TokenLayout(grid=(cfg.target_length // p, cfg.num_mel_bins // p), token_dim=p * p)

    @property
    def samples_needed(self) -> int:
        """Waveform samples that fill exactly ``target_length`` frames."""
        c = self.cfg
        shift = int(c.sample_rate * c.frame_shift / 1000)
        return int(c.sample_rate * FRAME_LENGTH_MS / 1000) + shift * (c.target_length - 1)

    def fbank(self, waveform: np.ndarray | torch.Tensor) -> torch.Tensor:
        """The raw (unpadded, unnormalised) filterbank ``[frames, mel]`` of a waveform ``[S]``."""
        w = torch.as_tensor(np.asarray(waveform, dtype=np.float32))
        if w.ndim != 1:
            raise ValueError(f"expected a mono waveform [S], got shape {list(w.shape)}")
        window = int(self.cfg.sample_rate * FRAME_LENGTH_MS / 1000)
        if w.numel() < window:  # shorter than one frame: pad to one (silence)
            w = F.pad(w, (0, window - w.numel()))
        return kaldi_fbank(w, self.cfg.sample_rate, self.cfg.num_mel_bins, self.cfg.frame_shift)

    def __call__(self, sample: np.ndarray | torch.Tensor) -> torch.Tensor:
        c = self.cfg
        fbank = self.fbank(sample)
        n = fbank.shape[0]
        fbank = F.pad(fbank, (0, 0, 0, c.target_length - n)) if n < c.target_length else fbank[: c.target_length]
        fbank = (fbank - c.mean) / (2 * c.std)
        gt, gf = self.layout.grid
        p = c.patch_size
        return fbank.reshape(gt, p, gf, p).permute(0, 2, 1, 3).reshape(gt * gf, p * p).contiguous()

    def spectrogram(self, tokens: torch.Tensor) -> torch.Tensor:
        """Inverse of the patching: tokens ``[B, N, p*p]`` -> normalised filterbanks ``[B, T, mel]``."""
        gt, gf = self.layout.grid
        p = self.cfg.patch_size
        return tokens.reshape(-1, gt, gf, p, p).permute(0, 1, 3, 2, 4).reshape(-1, gt * p, gf * p)

    def detokenize(self, tokens: torch.Tensor, coords: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Tokens ``[B, N, p*p]`` -> grey spectrogram pictures ``[B, 3, mel, T]`` in [0, 1]:
        time to the right, low frequencies at the bottom, normalised values -1.5..1.5 as black..white."""
        spec = self.spectrogram(tokens.float()).transpose(1, 2).flip(1)  # [B, mel, T]
        return ((spec + 1.5) / 3.0).clamp(0, 1)[:, None].expand(-1, 3, -1, -1)
