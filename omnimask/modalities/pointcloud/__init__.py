"""Point-cloud modality (Point-MAE): ingest of PLY/NPY/XYZ/TXT clouds and OFF/OBJ meshes (``ingest.py``,
``readers.py``), the loader's sampling and augmentation (``decode.py``), and batched plain-torch
geometry (``geometry.py``: FPS, kNN grouping, Chamfer distance). The grouping tokenizer, block masker
and Point-MAE encoder arrive with the data-dependent-positions contract."""

from __future__ import annotations

from omnimask.modalities.base import Modality, Tokenizer
from omnimask.modalities.pointcloud.decode import PointCloudAugmentConfig, PointCloudDecoder
from omnimask.modalities.pointcloud.ingest import PointCloudIngestConfig, encode_point_file
from omnimask.registry import register


@register("modality", "pointcloud")
class PointCloudModality(Modality):
    name = "pointcloud"
    IngestConfig = PointCloudIngestConfig
    AugmentConfig = PointCloudAugmentConfig

    encode_file = staticmethod(encode_point_file)

    def decoder(self, augment: PointCloudAugmentConfig, tokenizer: Tokenizer) -> PointCloudDecoder:
        return PointCloudDecoder(augment)
