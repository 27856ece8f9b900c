"""Dataset filterbank statistics, for the tokenizer's ``mean`` and ``std`` on a new dataset."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Optional

from omnimask.core.config import from_dict
from omnimask.io.formats import iter_shard
from omnimask.io.manifest import Manifest
from omnimask.modalities.audio.decode import AudioAugmentConfig, AudioDecoder
from omnimask.modalities.audio.tokenizer import AudioFbankTokenizer

log = logging.getLogger(__name__)


def fbank_stats(root: Path, tokenizer_params: dict[str, Any], max_samples: Optional[int] = None) -> dict[str, Any]:
    """Mean and standard deviation of the filterbank values over the first ``target_length``
    frames of each sample (padding excluded), as the tokenizer computes them."""
    tok = AudioFbankTokenizer(from_dict(AudioFbankTokenizer.Config, tokenizer_params, "model.tokenizer"))
    # the first target_length frames, read as the loader reads them (member, sample-rate check, mono)
    window = AudioDecoder(AudioAugmentConfig(random_crop=False), tok.cfg.sample_rate, tok.samples_needed)
    manifest = Manifest.load(root)
    total = manifest.num_samples if max_samples is None else min(max_samples, manifest.num_samples)
    count, s1, s2, n = 0, 0.0, 0.0, 0
    started = last_log = time.perf_counter()
    for shard in manifest.shards:
        for _, members in iter_shard(manifest.format, root / shard.path):
            fb = tok.fbank(window(members, 0)).double()
            count += fb.numel()
            s1 += float(fb.sum())
            s2 += float((fb * fb).sum())
            n += 1
            if time.perf_counter() - last_log > 5:
                last_log = time.perf_counter()
                rate = n / (last_log - started)
                log.info("stats: %d/%d samples, %.0f samples/s, ETA %.0fs", n, total, rate, (total - n) / rate)
            if n >= total:
                break
        if n >= total:
            break
    if count == 0:
        raise ValueError(f"{root} holds no samples to compute statistics on")
    mean = s1 / count
    std = max(s2 / count - mean * mean, 0.0) ** 0.5
    return {
        "mean": mean,
        "std": std,
        "samples": n,
        "values": count,
        "summary": f"mean {mean:.7g}, std {std:.7g} over {n} samples",
        "overrides": {"mean": mean, "std": std},
    }
