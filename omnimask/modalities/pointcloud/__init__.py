"""Point-cloud modality (Point-MAE): ingest of PLY/NPY/XYZ/TXT clouds and OFF/OBJ meshes (``ingest.py``,
``readers.py``), the loader's sampling and augmentation (``decode.py``), batched plain-torch geometry
(``geometry.py``: FPS, kNN grouping, Chamfer distance), the group tokenizer (tokens and their centres
as coords) and the block masker. The encoder and head are in ``omnimask.modalities.pointcloud.model``."""

from __future__ import annotations

from pathlib import Path

from omnimask.core.interfaces import Modality, Tokenizer
from omnimask.core.registry import register
from omnimask.modalities.pointcloud.decode import PointCloudAugmentConfig, PointCloudDecoder
from omnimask.modalities.pointcloud.ingest import PointCloudIngestConfig, encode_point_file
from omnimask.modalities.pointcloud.tokenizer import PointGroupTokenizer


@register("modality", "pointcloud")
class PointCloudModality(Modality):
    """Point clouds and meshes (PLY, NPY, XYZ, OFF, OBJ): Point-MAE."""

    name = "pointcloud"
    IngestConfig = PointCloudIngestConfig
    AugmentConfig = PointCloudAugmentConfig

    tokenizer_types = (PointGroupTokenizer,)
    encode_file = staticmethod(encode_point_file)

    def decoder(self, augment: PointCloudAugmentConfig, tokenizer: Tokenizer) -> PointCloudDecoder:
        return PointCloudDecoder(augment)

    def example_inputs(self, out: Path, count: int, *, seed: int = 0) -> int:
        from omnimask.modalities.pointcloud.examples import build_demo_shapes

        return build_demo_shapes(out, count, seed=seed)
