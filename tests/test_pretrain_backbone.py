"""The synthetic backbone pretraining: targets by hand, training, a loadable file."""

import numpy as np
import pytest

import helpers
from cmsa_jax.data import synthetic
from cmsa_jax.run import state as state_lib
from cmsa_jax.tools import pretrain_backbone


def test_attribute_targets_are_cell_fractions_of_each_value():
  record = synthetic.generate_example(0, 'train', 3, image_size=64)
  targets = pretrain_backbone.attribute_targets(record)
  masks = [m[..., 0] > 0 for m in record['objects']['mask']]
  for name, values in pretrain_backbone.ATTRIBUTES.items():
    t = targets[name]
    assert t.shape == (8, 8, len(values) + 1)
    np.testing.assert_allclose(t.sum(-1), 1, atol=1e-6)
    want = np.zeros((64, 64, len(values) + 1))
    want[..., 0] = ~np.any(masks, axis=0)
    for mask, value in zip(masks, record['objects'][name]):
      want[mask, values.index(value.decode()) + 1] = 1
    np.testing.assert_allclose(t, want.reshape(8, 8, 8, 8, -1).mean((1, 3)), atol=1e-6)


def test_attribute_targets_reject_scenes_off_the_stride():
  record = synthetic.generate_example(0, 'train', 3, image_size=60)
  with pytest.raises(ValueError, match='stride'):
    pretrain_backbone.attribute_targets(record)


@pytest.mark.slow
def test_pretraining_lowers_the_loss_and_writes_a_backbone_the_model_loads(tmp_path):
  config = helpers.make_tiny_config()
  config.synthetic.image_size = config.image_size = 32
  path = str(tmp_path / 'backbone.npz')
  losses = pretrain_backbone.pretrain(config, path, steps=30, batch_size=4,
                                      learning_rate=1e-2, seed=0)
  assert np.mean(losses[-5:]) < np.mean(losses[:5])
  config.backbone_init = path
  model = state_lib.merge_model(*state_lib.create_train_state(config, vocab_size=10)[:2])
  np.testing.assert_array_equal(model.backbone.conv1.kernel[...], np.load(path)['conv1/kernel'])
