"""STS trains at its target density counted as non-zero outputs, the blocks a skipping engine
computes: its KL penalty holds P(h != 0) = sqrt(sigm(a)), not sigm(a) (which would leave
sqrt(0.1) = 32 % of its outputs non-zero at a 10 % target)."""

from training.settings import TrainSettings
from training.trainer import Trainer

from .conftest import tiny_config


def test_sts_trains_with_the_target_fraction_of_non_zero_outputs(bundle, tmp_path):
    # 16 gates x 256 examples per epoch, fixed seed; every epoch's realised density (non-zero
    # outputs over its batches) must lie within 0.03 of 0.1 (0.32 would fail by far).
    settings = TrainSettings(epochs=6, batch_size=32, optimizer="adam", lr=0.01, seed=0)
    result = Trainer(tiny_config("sts", density=0.1), settings, bundle, tmp_path,
                     progress=False, log=lambda *a, **k: None).fit()
    densities = [row["train_density"][0] for row in result.history]
    assert all(abs(d - 0.1) < 0.03 for d in densities), densities
