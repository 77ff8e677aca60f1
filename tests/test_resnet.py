"""ResNet backbone vs. an independent NumPy transcription of torchvision's ResNet."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cmsa_jax import resnet
from cmsa_jax import weights

EPS = 1e-5


# --- NumPy reference, NCHW / OIHW as in PyTorch, written from the definitions.

def ref_conv(x, w, stride=1, dilation=1):
  """torch.nn.Conv2d(bias=False, padding=dilation * (k - 1) // 2)."""
  k = w.shape[-1]
  pad = dilation * (k - 1) // 2
  x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
  ho = (x.shape[2] - dilation * (k - 1) - 1) // stride + 1
  wo = (x.shape[3] - dilation * (k - 1) - 1) // stride + 1
  out = 0
  for a in range(k):
    for b in range(k):
      tap = x[:, :, a * dilation::stride, b * dilation::stride][:, :, :ho, :wo]
      out = out + np.einsum('nihw,oi->nohw', tap, w[:, :, a, b])
  return out


def ref_maxpool(x):
  """torch.nn.MaxPool2d(3, stride=2, padding=1)."""
  x = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
  ho, wo = (x.shape[2] - 3) // 2 + 1, (x.shape[3] - 3) // 2 + 1
  return np.max([x[:, :, a::2, b::2][:, :, :ho, :wo]
                 for a in range(3) for b in range(3)], axis=0)


def ref_bn(x, sd, key):
  """Eval-mode torch.nn.BatchNorm2d."""
  c = lambda name: sd[f'{key}.{name}'][None, :, None, None]
  return (x - c('running_mean')) / np.sqrt(c('running_var') + EPS) * c(
      'weight') + c('bias')


def ref_resnet(x, sd, blocks, replace_stride_with_dilation):
  """torchvision.models.ResNet(Bottleneck, blocks, ...) up to layer4."""
  relu = lambda v: np.maximum(v, 0)
  x = relu(ref_bn(ref_conv(x, sd['conv1.weight'], stride=2), sd, 'bn1'))
  x = ref_maxpool(x)
  dilation, outs = 1, []
  for i, n in enumerate(blocks):
    stride, previous_dilation = (1 if i == 0 else 2), dilation
    if i > 0 and replace_stride_with_dilation[i - 1]:
      dilation, stride = dilation * stride, 1
    for j in range(n):
      key = f'layer{i + 1}.{j}'
      s, d = (stride, previous_dilation) if j == 0 else (1, dilation)
      y = relu(ref_bn(ref_conv(x, sd[f'{key}.conv1.weight']), sd, f'{key}.bn1'))
      y = relu(ref_bn(ref_conv(y, sd[f'{key}.conv2.weight'], s, d), sd,
                      f'{key}.bn2'))
      y = ref_bn(ref_conv(y, sd[f'{key}.conv3.weight']), sd, f'{key}.bn3')
      if f'{key}.downsample.0.weight' in sd:
        x = ref_bn(ref_conv(x, sd[f'{key}.downsample.0.weight'], s), sd,
                   f'{key}.downsample.1')
      x = relu(x + y)
    outs.append(x)
  return outs


def torchvision_state_dict(blocks, width, seed=0):
  """Random torchvision-keyed ResNet state dict (with fc and BN counters)."""
  rng = np.random.default_rng(seed)
  sd = {}

  def conv_bn(conv, bn, cout, cin, k):
    sd[conv] = rng.normal(0, np.sqrt(2 / (cin * k * k)), (cout, cin, k, k))
    sd[f'{bn}.weight'] = rng.uniform(0.5, 1.5, cout)
    sd[f'{bn}.bias'] = rng.normal(0, 0.2, cout)
    sd[f'{bn}.running_mean'] = rng.normal(0, 0.2, cout)
    sd[f'{bn}.running_var'] = rng.uniform(0.5, 2.0, cout)
    sd[f'{bn}.num_batches_tracked'] = np.array(7, np.int64)

  conv_bn('conv1.weight', 'bn1', width, 3, 7)
  cin = width
  for i, n in enumerate(blocks):
    planes = width * 2**i
    for j in range(n):
      key = f'layer{i + 1}.{j}'
      conv_bn(f'{key}.conv1.weight', f'{key}.bn1', planes, cin, 1)
      conv_bn(f'{key}.conv2.weight', f'{key}.bn2', planes, planes, 3)
      conv_bn(f'{key}.conv3.weight', f'{key}.bn3', 4 * planes, planes, 1)
      if j == 0:
        conv_bn(f'{key}.downsample.0.weight', f'{key}.downsample.1',
                4 * planes, cin, 1)
      cin = 4 * planes
  sd['fc.weight'] = rng.normal(size=(10, cin))
  sd['fc.bias'] = rng.normal(size=(10,))
  return {k: v.astype(np.float32) if v.dtype == np.float64 else v
          for k, v in sd.items()}


@pytest.mark.parametrize('blocks, dilations, replace', [
    ((1, 1, 2, 2), (1, 1, 2, 4), (False, True, True)),  # DeepLab, OS 8.
    ((2, 1, 1, 2), (1, 1, 1, 2), (False, False, True)),  # OS 16.
    ((1, 2, 1, 1), (1, 1, 1, 1), (False, False, False)),  # Plain, OS 32.
])
def test_matches_numpy_reference(blocks, dilations, replace):
  width = 8
  sd = torchvision_state_dict(blocks, width)
  model = resnet.ResNet(blocks=blocks, width=width, dilations=dilations,
                        rngs=nnx.Rngs(0))
  weights.import_torchvision_resnet(sd, model)
  x = np.random.default_rng(1).normal(size=(2, 37, 45, 3)).astype(np.float32)
  out = nnx.jit(lambda m, x: m(x))(model, jnp.asarray(x))
  ref = ref_resnet(x.transpose(0, 3, 1, 2).astype(np.float64),
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
  weights.import_torchvision_resnet(
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
