"""Video modality: VideoMAE (tube masking, tubelets, per-channel normalised targets) and
VideoMAE V2's running-cell decoder masking."""

from __future__ import annotations

from pathlib import Path

from omnimask.core.interfaces import Modality, Tokenizer
from omnimask.core.registry import register
from omnimask.modalities.video.decode import VideoAugmentConfig, VideoDecoder
from omnimask.modalities.video.ingest import VideoIngestConfig, encode_video_file
from omnimask.modalities.video.tokenizer import VideoTubeletTokenizer


@register("modality", "video")
class VideoModality(Modality):
    """Video clips (MP4, WebM, MKV, AVI, MOV through PyAV): VideoMAE."""

    name = "video"
    IngestConfig = VideoIngestConfig
    AugmentConfig = VideoAugmentConfig

    tokenizer_types = (VideoTubeletTokenizer,)
    encode_file = staticmethod(encode_video_file)

    def decoder(self, augment: VideoAugmentConfig, tokenizer: Tokenizer) -> VideoDecoder:
        return VideoDecoder(augment, tokenizer.num_frames, tokenizer.image_size)

    def example_inputs(self, out: Path, count: int, *, seed: int = 0) -> int:
        from omnimask.modalities.video.examples import build_demo_videos

        return build_demo_videos(out, count, seed=seed)
