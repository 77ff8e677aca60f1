"""The video model: CFSA on every level, the image model on the annotated frame,
the no-CFSA ablation equal to the image model, padded frames ignored."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cmsa_jax import errors
from cmsa_jax.models import cmsa_image
from cmsa_jax.models import cmsa_video
from cmsa_jax.run import state as state_lib

TINY = dict(backbone_args=dict(blocks=(1, 1, 1, 1), width=4), text_args=dict(dim=8),
            attn_dim=8, fusion_dim=8)
VOCAB, T = 30, 3


def _batch(b=2, size=24, n=4, seed=0):
  rng = np.random.default_rng(seed)
  frames = jnp.asarray(rng.uniform(0, 255, (b, T, size, size, 3)), jnp.float32)
  frame_mask = jnp.asarray([[True] * T, [False] + [True] * (T - 1)][:b])
  tokens = jnp.asarray(rng.integers(1, VOCAB, (b, n)), jnp.int32)
  return frames, frame_mask, tokens, jnp.ones((b, n), bool)


def _model(**kwargs):
  return cmsa_video.Model(vocab_size=VOCAB, **TINY, **kwargs, rngs=nnx.Rngs(0))


def test_outputs_and_paper_scale_shapes():
  out = _model()(*_batch())
  assert out['logits'].shape == (2, 24, 24)
  assert out['frame_weights'].shape == (2, 3, T)
  assert out['frame_attention'].shape == (2, 3, T, T)
  np.testing.assert_allclose(np.asarray(out['frame_weights']).sum(-1), 1, atol=1e-6)
  assert np.all(np.asarray(out['frame_weights'])[1, :, 0] == 0)  # The padded frame.
  abstract = nnx.eval_shape(lambda: cmsa_video.Model(vocab_size=100, rngs=nnx.Rngs(0)))
  specs = [jax.ShapeDtypeStruct(s, d) for s, d in (
      ((1, 11, 320, 320, 3), jnp.uint8), ((1, 11), bool), ((1, 20), jnp.int32), ((1, 20), bool))]
  shapes = nnx.eval_shape(lambda m, *x: m(*x), abstract, *specs)
  assert shapes['logits'].shape == (1, 320, 320)
  assert shapes['frame_attention'].shape == (1, 3, 11, 11)
  assert [c.visual_dim for c in abstract.cfsa] == [512, 1024, 2048]


def test_without_cfsa_it_is_the_image_model_on_the_annotated_frame():
  frames, frame_mask, tokens, token_mask = _batch()
  video = _model(cfsa=False)(frames, frame_mask, tokens, token_mask)
  image = cmsa_image.Model(vocab_size=VOCAB, **TINY, rngs=nnx.Rngs(0))(
      frames[:, T // 2], tokens, token_mask)
  np.testing.assert_allclose(video['logits'], image['logits'], atol=1e-5)
  assert 'frame_weights' not in video


def test_blocked_equals_dense_and_padded_frames_are_ignored():
  frames, frame_mask, tokens, token_mask = _batch()
  blocked = _model()(frames, frame_mask, tokens, token_mask)
  dense = _model(cfsa_impl='dense')(frames, frame_mask, tokens, token_mask)
  np.testing.assert_allclose(blocked['logits'], dense['logits'], atol=1e-4)
  np.testing.assert_allclose(blocked['frame_weights'], dense['frame_weights'], atol=1e-5)
  changed = frames.at[1, 0].set(255 - frames[1, 0])  # Example 1's padded frame.
  again = _model()(changed, frame_mask, tokens, token_mask)
  np.testing.assert_allclose(again['logits'], blocked['logits'], atol=1e-5)
  other = _model()(frames.at[0, 0].set(255 - frames[0, 0]), frame_mask, tokens, token_mask)
  assert not np.allclose(other['logits'][0], blocked['logits'][0], atol=1e-4)  # A valid one.


def test_gradients_reach_cfsa_and_not_the_frozen_backbone(tiny_config):
  config = tiny_config
  config.model_name = 'cmsa_video'
  config.model.cfsa = True
  graphdef, state, _ = state_lib.create_train_state(config, VOCAB)
  frames, frame_mask, tokens, token_mask = _batch(size=32)

  def loss(params):
    model = state_lib.merge_model(graphdef, state.replace(params=params))
    out = model(frames, frame_mask, tokens, token_mask)
    return model.loss(out, {'mask': (frames[:, T // 2, ..., 0] > 128).astype(jnp.float32)})

  grads = jax.grad(loss)(state.params)
  norms = {'/'.join(map(str, path)): float(jnp.abs(g).max())
           for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]}
  assert not any('backbone' in name for name in norms)
  assert max(v for k, v in norms.items() if 'cfsa' in k and 'query' in k) > 0


def test_config_fields_are_checked_against_image_and_video_arguments(tiny_config):
  tiny_config.model_name = 'cmsa_video'
  tiny_config.model.frame_weight = 'mean'
  assert isinstance(state_lib.create_model(tiny_config, VOCAB), cmsa_video.Model)
  tiny_config.model.frames_weight = 'mean'
  with pytest.raises(errors.ConfigError, match='frames_weight'):
    state_lib.create_model(tiny_config, VOCAB)


@pytest.mark.parametrize('cfsa', [True, False])
def test_incompatible_cfsa_choices_name_both_fields(tiny_config, cfsa):
  tiny_config.model_name = 'cmsa_video'
  tiny_config.model.cfsa = cfsa
  tiny_config.model.cfsa_tokens = 'visual'
  tiny_config.model.cfsa_values = 'moments'
  with pytest.raises(errors.ConfigError) as e:
    state_lib.create_model(tiny_config, VOCAB)
  message = str(e.value)
  assert "cfsa_values='moments'" in message and "cfsa_tokens='visual'" in message
  assert '\n' not in message


def test_bad_clip_shapes_are_rejected():
  frames, frame_mask, tokens, token_mask = _batch()
  with pytest.raises(ValueError, match='T odd'):
    _model()(frames[:, :2], frame_mask[:, :2], tokens, token_mask)
