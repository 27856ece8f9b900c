"""Video modality: VideoMAE (tube masking, tubelets, per-channel normalised targets) and
VideoMAE V2's running-cell decoder masking."""

from __future__ import annotations

from omnimask.modalities.base import Modality, Tokenizer
from omnimask.modalities.video import maskers  # noqa: F401  (registers "tube", "running_cell")
from omnimask.modalities.video.decode import VideoAugmentConfig, VideoDecoder
from omnimask.modalities.video.ingest import VideoIngestConfig, encode_video_file
from omnimask.modalities.video.tokenizer import VideoTubeletTokenizer
from omnimask.registry import register


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
