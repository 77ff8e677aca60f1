"""ResNet backbone vs. an independent NumPy transcription of torchvision's ResNet."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import helpers
import references
from cmsa_jax.models import resnet
from cmsa_jax.models.backbones import resnet as resnet_part


@pytest.mark.parametrize('blocks, dilations, replace', [
    ((1, 1, 2, 2), (1, 1, 2, 4), (False, True, True)),  # DeepLab, OS 8.
    ((2, 1, 1, 2), (1, 1, 1, 2), (False, False, True)),  # OS 16.
    ((1, 2, 1, 1), (1, 1, 1, 1), (False, False, False)),  # Plain, OS 32.
])
def test_matches_numpy_reference(blocks, dilations, replace):
  width = 8
  sd = helpers.torchvision_state_dict(blocks, width)
  model = resnet.ResNet(blocks=blocks, width=width, dilations=dilations,
                        rngs=nnx.Rngs(0))
  resnet_part.import_torchvision(sd, model)
  x = np.random.default_rng(1).normal(size=(2, 37, 45, 3)).astype(np.float32)
  out = nnx.jit(lambda m, x: m(x))(model, jnp.asarray(x))
  ref = references.ref_resnet(x.transpose(0, 3, 1, 2).astype(np.float64),
                   {k: v.astype(np.float64) for k, v in sd.items()},
                   blocks, replace)
  for name, r in zip(resnet.STAGES, ref):
    np.testing.assert_allclose(out[name], r.transpose(0, 2, 3, 1),
                               rtol=1e-4, atol=1e-4, err_msg=name)


def test_resnet101_shapes_and_parameter_count():
  model = nnx.eval_shape(lambda: resnet.resnet101(rngs=nnx.Rngs(0)))
  count = lambda f: sum(v.size for _, v in nnx.to_flat_state(nnx.state(model, f)))
  assert count(nnx.Param) == 42_500_160  # torchvision ResNet-101 minus fc.
  # One running mean and variance per batch-norm scale and bias, none trainable.
  bn_params = nnx.All(nnx.Param, nnx.PathContains('scale'))
  assert count(nnx.BatchStat) == 2 * count(bn_params) > 0
  graphdef, state = nnx.split(model)
  out = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x), state,
                       jax.ShapeDtypeStruct((1, 320, 320, 3), jnp.float32))
  assert {k: v.shape for k, v in out.items()} == {
      'res2': (1, 80, 80, 256), 'res3': (1, 40, 40, 512),
      'res4': (1, 40, 40, 1024), 'res5': (1, 40, 40, 2048)}


def test_bfloat16_computes_in_bfloat16_close_to_float32():
  kw = dict(blocks=(1, 1, 1, 1), width=8)
  f32 = resnet.ResNet(**kw, rngs=nnx.Rngs(0))
  bf16 = resnet.ResNet(**kw, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(0), (1, 32, 32, 3))
  forward = nnx.jit(lambda m, x: m(x)['res5'])
  a, b = forward(f32, x), forward(bf16, x)
  assert b.dtype == jnp.bfloat16
  assert nnx.state(bf16, nnx.Param)['conv1']['kernel'].dtype == jnp.float32
  assert float(jnp.abs(a - b).max()) < 0.05 * float(jnp.abs(a).max())


@pytest.mark.parametrize('dilations, strides', [
    ((1, 1, 2, 4), (1, 2, 1, 1)), ((1, 1, 1, 2), (1, 2, 2, 1)),
    ((1, 1, 1, 1), (1, 2, 2, 2)), ((1, 2, 4, 8), (1, 1, 1, 1))])
def test_stage_strides(dilations, strides):
  assert resnet.stage_strides(dilations) == strides


@pytest.mark.parametrize('dilations', [(1, 1, 3, 3), (2, 2, 2, 2), (1, 2, 2),
                                       (1, 1, 4, 8)])
def test_bad_dilations_raise(dilations):
  with pytest.raises(ValueError, match='dilations'):
    resnet.ResNet(blocks=(1, 1, 1, 1), width=8, dilations=dilations,
                  rngs=nnx.Rngs(0))


def test_bad_blocks_and_input_raise():
  with pytest.raises(ValueError, match='blocks'):
    resnet.ResNet(blocks=(1, 1, 0, 1), width=8, rngs=nnx.Rngs(0))
  model = resnet.ResNet(blocks=(1, 1, 1, 1), width=8, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r'\(1, 3, 16, 16\)'):
    model(jnp.zeros((1, 3, 16, 16)))


def test_matches_torchvision_when_installed():
  torch = pytest.importorskip('torch')
  models = pytest.importorskip('torchvision.models')
  blocks = (1, 1, 2, 2)
  torch.manual_seed(0)
  tv = models.ResNet(models.resnet.Bottleneck, list(blocks),
                     replace_stride_with_dilation=[False, True, True]).eval()
  with torch.no_grad():
    for m in tv.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        m.weight.uniform_(0.5, 1.5), m.bias.normal_(0, 0.2)
        m.running_mean.normal_(0, 0.2), m.running_var.uniform_(0.5, 2.0)
  model = resnet.ResNet(blocks=blocks, rngs=nnx.Rngs(0))
  resnet_part.import_torchvision(
      {k: v.numpy() for k, v in tv.state_dict().items()}, model)
  x = np.random.default_rng(0).normal(size=(1, 3, 41, 35)).astype(np.float32)
  ref = []
  with torch.no_grad():
    h = tv.maxpool(tv.relu(tv.bn1(tv.conv1(torch.from_numpy(x)))))
    for i in range(4):
      h = getattr(tv, f'layer{i + 1}')(h)
      ref.append(h.numpy().transpose(0, 2, 3, 1))
  out = nnx.jit(lambda m, x: m(x))(model, jnp.asarray(x.transpose(0, 2, 3, 1)))
  for name, r in zip(resnet.STAGES, ref):
    np.testing.assert_allclose(out[name], r, rtol=1e-4,
                               atol=1e-4 * np.abs(r).max(), err_msg=name)
