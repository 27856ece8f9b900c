"""What `pretrain` checks on the driver before Ray starts or the run's folder is made."""

import pytest

from omnimask.core.config import ConfigError, load_recipe
from omnimask.data.preprocess import preprocess
from omnimask.train.pretrain import pretrain


def test_a_dataset_of_another_modality_fails_before_the_run(image_dataset, tmp_path):
    cfg = load_recipe("audiomae_tiny", [f"data.path={image_dataset['shards']}", f"run.dir={tmp_path / 'runs'}"])
    with pytest.raises(ConfigError, match=r"holds image samples; the recipe is for audio. Recipes for image: .*mae_image_tiny"):
        pretrain(cfg, name="wrong")
    assert not (tmp_path / "runs").exists()


def test_a_dataset_without_samples_fails_before_the_run(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "empty.jpg").write_bytes(b"")
    (tmp_path / "raw" / "text.jpg").write_text("not a jpeg\n")
    manifest = preprocess("image", tmp_path / "raw", tmp_path / "shards", num_cpus=2)
    assert manifest.num_samples == 0 and manifest.num_quarantined == 2
    cfg = load_recipe("mae_image_tiny", [f"data.path={tmp_path / 'shards'}", f"run.dir={tmp_path / 'runs'}"])
    with pytest.raises(ConfigError, match=r"holds no samples: all 2 inputs were quarantined \(the reasons are in .*quarantine.jsonl\)"):
        pretrain(cfg, name="empty")
    assert not (tmp_path / "runs").exists()
