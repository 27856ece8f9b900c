"""Audio modality: AudioMAE (kaldi filterbank patches, random or time/frequency masking)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from omnimask.core.interfaces import Modality, Tokenizer
from omnimask.core.registry import register
from omnimask.modalities.audio.decode import AudioAugmentConfig, AudioDecoder
from omnimask.modalities.audio.ingest import AudioIngestConfig, encode_audio_file
from omnimask.modalities.audio.tokenizer import AudioFbankTokenizer


@register("modality", "audio")
class AudioModality(Modality):
    """Sound files (WAV, FLAC, OGG, MP3, M4A), resampled to 16 kHz FLAC: AudioMAE."""

    name = "audio"
    IngestConfig = AudioIngestConfig
    AugmentConfig = AudioAugmentConfig

    tokenizer_types = (AudioFbankTokenizer,)
    encode_file = staticmethod(encode_audio_file)

    def decoder(self, augment: AudioAugmentConfig, tokenizer: Tokenizer) -> AudioDecoder:
        return AudioDecoder(augment, tokenizer.cfg.sample_rate, tokenizer.samples_needed)

    def dataset_stats(self, root: Path, tokenizer_params: dict[str, Any], max_samples: Optional[int]) -> dict[str, Any]:
        from omnimask.modalities.audio.stats import fbank_stats

        return fbank_stats(root, tokenizer_params, max_samples)

    def example_inputs(self, out: Path, count: int, *, seed: int = 0) -> int:
        from omnimask.modalities.audio.examples import build_demo_sounds

        return build_demo_sounds(out, count, seed=seed)
