"""Model parts by name: every registered backbone and text encoder builds the image
and video models through the run loop's create_model (no change in run/), the
constructors' defaults are the paper config's, bad names and arguments are clear
errors."""

import inspect

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import helpers
from cmsa_jax import errors
from cmsa_jax.models import backbones
from cmsa_jax.models import cmsa
from cmsa_jax.models import cmsa_image
from cmsa_jax.models import cmsa_video
from cmsa_jax.models import text
from cmsa_jax.run import state as state_lib
from configs import a2d
from configs import default

# Tiny arguments for each registered part (a new part adds its line).
BACKBONE_ARGS = {'resnet': dict(blocks=(1, 1, 1, 1), width=4)}
TEXT_ARGS = {'embed': dict(dim=8), 'bilstm': dict(dim=8), 'transformer': dict(dim=8, heads=2),
             'bert': dict(layers=1, hidden=8, heads=2, intermediate=16, max_positions=16,
                          max_sequence=8, cls_id=0, sep_id=1)}
PIECES = {'bert': 2}  # Sub-word ids per word (tokens (B, N, K)) of parts with their own tokenizer.
VOCAB = 11


def _config(model_name, backbone, text_encoder):
  config = helpers.make_tiny_config()
  config.model_name = model_name
  if model_name == 'cmsa_video':
    config.model.cfsa_impl = 'dense'
  config.model.backbone = backbone
  config.model.backbone_args = BACKBONE_ARGS[backbone]
  config.model.text_encoder = text_encoder
  config.model.text_args = TEXT_ARGS[text_encoder]
  config.model.attn_dim = config.model.fusion_dim = 8
  return config


def _inputs(model_name, text_encoder='embed', b=2, size=24, n=4):
  rng = np.random.default_rng(0)
  pieces = PIECES.get(text_encoder)
  tokens = jnp.asarray(rng.integers(2, VOCAB, (b, n) + ((pieces,) if pieces else ())), jnp.int32)
  token_mask = jnp.arange(n)[None] < jnp.array([[2], [n]])
  if model_name == 'cmsa_video':
    frames = jnp.asarray(rng.uniform(0, 255, (b, 3, size, size, 3)), jnp.float32)
    return frames, jnp.ones((b, 3), bool), tokens, token_mask
  return jnp.asarray(rng.uniform(0, 255, (b, size, size, 3)), jnp.float32), tokens, token_mask


def test_every_part_has_tiny_test_arguments():
  assert set(BACKBONE_ARGS) == set(backbones.REGISTRY.parts)
  assert set(TEXT_ARGS) == set(text.REGISTRY.parts)


@pytest.mark.parametrize('model_name', ['cmsa_image', 'cmsa_video'])
@pytest.mark.parametrize('backbone, text_encoder',
                         [(b, 'embed') for b in BACKBONE_ARGS] +
                         [('resnet', t) for t in TEXT_ARGS if t != 'embed'])
def test_each_registered_part_builds_and_runs(model_name, backbone, text_encoder):
  model = state_lib.create_model(_config(model_name, backbone, text_encoder), VOCAB)
  assert isinstance(model.backbone, backbones.REGISTRY.get(backbone))
  assert isinstance(model.embed, text.REGISTRY.get(text_encoder))
  assert [layer.visual_dim for layer in model.cmsa] == list(model.backbone.levels.values())
  assert {layer.word_dim for layer in model.cmsa} == {model.embed.width}
  out = nnx.jit(lambda m, *x: m(*x))(model, *_inputs(model_name, text_encoder))
  assert out['logits'].shape == (2, 24, 24) and np.all(np.isfinite(out['logits']))
  np.testing.assert_allclose(np.asarray(out['word_attention']).sum(-1), 1, atol=1e-5)


def test_frozen_parts_are_left_out_of_the_trained_parameters():
  config = _config('cmsa_image', 'resnet', 'embed')
  for backbone_frozen, text_frozen in ((True, False), (False, True)):
    config.model.backbone_args.frozen = backbone_frozen
    config.model.text_args.frozen = text_frozen
    _, state, _ = state_lib.create_train_state(config, VOCAB)
    trained = {p[0] for p, _ in nnx.to_flat_state(state.params)}
    assert ('backbone' in trained) != backbone_frozen and ('embed' in trained) != text_frozen
    assert {'cmsa', 'fusion'} <= trained
    frozen = {p[0] for p, _ in nnx.to_flat_state(state.frozen)}
    assert 'backbone' in frozen  # Batch-norm statistics are never trained.


def test_unknown_part_name_lists_the_registered_ones():
  config = _config('cmsa_image', 'resnet', 'embed')
  config.model.text_encoder = 'gpt'
  with pytest.raises(errors.ConfigError, match=r"text_encoder='gpt'.*registered: .*embed"):
    state_lib.create_model(config, VOCAB)
  config = _config('cmsa_image', 'resnet', 'embed')
  config.model.backbone = 'swin'
  with pytest.raises(errors.ConfigError, match=r"backbone='swin'.*registered: .*resnet"):
    state_lib.create_model(config, VOCAB)


def test_unknown_part_argument_names_it_and_the_accepted_ones():
  config = _config('cmsa_image', 'resnet', 'embed')
  config.model.backbone_args.depth = 3
  with pytest.raises(errors.ConfigError, match=r'backbone_args .*depth.*takes .*blocks'):
    state_lib.create_model(config, VOCAB)


def test_fields_of_older_configs_move_to_their_parts():
  config = helpers.make_tiny_config()
  new = state_lib.model_args(config)
  del config.model.backbone_args, config.model.text_args  # As a config saved before parts.
  config.model.backbone_blocks, config.model.backbone_width = (1, 1, 1, 1), 4
  config.model.remat_backbone, config.model.embed_dim = 'none', 16
  config.freeze_backbone = True
  old = state_lib.model_args(config)
  assert old == new


def _defaults(fn):
  return {k: p.default for k, p in inspect.signature(fn).parameters.items()
          if p.default is not inspect.Parameter.empty}


def _check_defaults(fields, defaults, where):
  for key, value in fields.items():
    if key in defaults and not key.endswith('_args'):  # *_args: each part's own defaults.
      value = tuple(value) if isinstance(value, list) else value
      assert defaults[key] == value, (where, key)


def test_constructor_defaults_are_the_paper_configs():
  model = default.get_config().model
  image = _defaults(cmsa_image.Model.__init__)
  assert set(model) <= set(image)
  _check_defaults(model, image, 'cmsa_image.Model')
  _check_defaults(model, _defaults(cmsa.CMSA.__init__), 'cmsa.CMSA')
  _check_defaults(model.backbone_args.to_dict(),
                  _defaults(backbones.REGISTRY.get(model.backbone).__init__), model.backbone)
  _check_defaults(model.text_args.to_dict(),
                  _defaults(text.REGISTRY.get(model.text_encoder).__init__), model.text_encoder)
  video = a2d.get_config().model
  _check_defaults(video, _defaults(cmsa_video.Model.__init__), 'cmsa_video.Model')
