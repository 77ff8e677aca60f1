"""Weight import of the 'resnet' backbone part: key table, error reports, file formats,
converted backbones, the part's load(path), CLI."""

import functools
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from absl import flags
from absl.testing import flagsaver
from flax import nnx

import helpers
from cmsa_jax import errors
from cmsa_jax.models import resnet
from cmsa_jax.models import weights
from cmsa_jax.models.backbones import resnet as resnet_part
from cmsa_jax.tools import import_weights

BLOCKS, WIDTH = (1, 1, 2, 1), 8


@functools.cache
def _initial():
  return resnet_part.Backbone(blocks=BLOCKS, width=WIDTH, rngs=nnx.Rngs(0))


def tiny():
  """A fresh copy of one tiny ResNet (built once: JAX init compiles slowly)."""
  return nnx.clone(_initial())


def forward(model):
  x = jnp.asarray(np.random.default_rng(3).normal(size=(1, 24, 24, 3)),
                  jnp.float32)
  return nnx.jit(lambda m, x: m(x))(model, x)


def values(model):
  return {p: np.asarray(v[...])
          for p, v in nnx.to_flat_state(nnx.state(model))}


def test_key_table_maps_every_variable_once():
  model = tiny()
  table = resnet_part.torchvision_key_table(model)
  paths = [path for path, _ in table.values()]
  assert len(set(paths)) == len(paths)
  assert set(paths) == set(values(model))
  assert table['layer3.1.conv2.weight'] == (('layer3', 1, 'conv2', 'kernel'),
                                            weights.OIHW_TO_HWIO)
  assert table['layer1.0.downsample.1.running_var'][0] == (
      'layer1', 0, 'downsample_bn', 'var')


def test_import_copies_and_transposes():
  sd = helpers.torchvision_state_dict(BLOCKS, WIDTH)
  model = tiny()
  report = resnet_part.import_torchvision(sd, model)
  np.testing.assert_array_equal(model.layer2[0].conv2.kernel[...][1, 2, 3, 4],
                                sd['layer2.0.conv2.weight'][4, 3, 1, 2])
  np.testing.assert_array_equal(model.layer3[1].bn1.mean[...],
                                sd['layer3.1.bn1.running_mean'])
  assert len(report.loaded) == len(resnet_part.torchvision_key_table(model))
  assert report.ignored['ImageNet classifier'] == ['fc.weight', 'fc.bias']
  assert len(report.ignored['batch-norm step counters']) == len(
      [k for k in sd if k.endswith('num_batches_tracked')])
  assert not (report.missing or report.unexpected or report.mismatched)


def test_import_lists_every_error_and_leaves_model_unchanged():
  sd = helpers.torchvision_state_dict(BLOCKS, WIDTH)
  del sd['layer2.0.conv2.weight'], sd['layer4.0.bn3.bias']
  sd['layer9.0.conv1.weight'] = np.zeros((1, 1, 1, 1), np.float32)
  sd['conv1.weight'] = np.zeros((WIDTH, 3, 5, 5), np.float32)
  model = tiny()
  before = values(model)
  with pytest.raises(errors.ConfigError) as e:
    resnet_part.import_torchvision(sd, model)
  msg = str(e.value)
  assert '\n' not in msg
  for key in ('layer2.0.conv2.weight', 'layer4.0.bn3.bias',
              'layer9.0.conv1.weight', 'conv1.weight (8, 3, 5, 5)'):
    assert key in msg
  assert 'missing (2)' in msg and 'unexpected (1)' in msg
  assert 'mismatched (1)' in msg
  after = values(model)
  assert all(np.array_equal(before[p], after[p]) for p in before)


def test_allow_missing_keeps_initial_values():
  sd = {k: v for k, v in helpers.torchvision_state_dict(BLOCKS, WIDTH).items()
        if not k.startswith('layer4.')}
  model = tiny()
  before = values(model)
  with pytest.raises(ValueError, match=r'missing \(20\): layer4\.0\.bn1\.bias'):
    resnet_part.import_torchvision(sd, model)
  report = resnet_part.import_torchvision(sd, model,
                                             allow_missing=['layer4.*'])
  assert report.kept_initial and all(
      k.startswith('layer4.') for k in report.kept_initial)
  after = values(model)
  np.testing.assert_array_equal(after[('layer4', 0, 'conv2', 'kernel')],
                                before[('layer4', 0, 'conv2', 'kernel')])
  np.testing.assert_array_equal(after[('layer3', 0, 'bn1', 'scale')],
                                sd['layer3.0.bn1.weight'])


def test_deeplabv3_checkpoint_matches_resnet_checkpoint():
  sd = helpers.torchvision_state_dict(BLOCKS, WIDTH)
  deeplab = {f'backbone.{k}': v for k, v in sd.items() if not k.startswith('fc.')}
  deeplab['classifier.4.weight'] = np.zeros((21, 256, 1, 1), np.float32)
  deeplab['aux_classifier.0.weight'] = np.zeros((256, 1024, 3, 3), np.float32)
  plain, seg = tiny(), tiny()
  resnet_part.import_torchvision(sd, plain)
  report = resnet_part.import_torchvision(deeplab, seg)
  assert sorted(report.ignored['DeepLabV3 heads']) == [
      'aux_classifier.0.weight', 'classifier.4.weight']
  assert 'DeepLabV3 heads' in str(report)
  a, b = forward(plain), forward(seg)
  for name in resnet.STAGES:
    np.testing.assert_array_equal(a[name], b[name])


def _write(path, sd):
  """Writes the state dict `sd` as .npz or .safetensors (by the suffix); returns the path."""
  path = str(path)
  if path.endswith('.npz'):
    np.savez(path, **sd)
  else:
    from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
    save_file(sd, path)
  return path


@pytest.mark.parametrize('ext', ['npz', 'safetensors'])
def test_state_dict_file_round_trip(tmp_path, ext):
  sd = helpers.torchvision_state_dict(BLOCKS, WIDTH)
  path = _write(tmp_path / f'resnet.{ext}', sd)
  loaded = weights.load_state_dict(path)
  assert loaded.keys() == sd.keys()
  for k in sd:
    np.testing.assert_array_equal(loaded[k], sd[k])
    assert loaded[k].dtype == sd[k].dtype


def test_load_state_dict_errors(tmp_path, monkeypatch):
  with pytest.raises(FileNotFoundError, match='resnet101-63fe2227.pth'):
    weights.load_state_dict(str(tmp_path / 'absent.pth'), resnet_part.WEIGHTS_HELP)
  bad = tmp_path / 'weights.h5'
  bad.write_bytes(b'')
  with pytest.raises(ValueError, match=r"'\.h5'"):
    weights.load_state_dict(str(bad))
  pth = tmp_path / 'weights.pth'
  pth.write_bytes(b'')
  monkeypatch.setitem(sys.modules, 'torch', None)  # As if torch were absent.
  with pytest.raises(ImportError, match='needs PyTorch'):
    weights.load_state_dict(str(pth))


def test_pth_round_trip(tmp_path):
  torch = pytest.importorskip('torch')
  sd = helpers.torchvision_state_dict(BLOCKS, WIDTH)
  path = str(tmp_path / 'resnet.pth')
  torch.save({k: torch.from_numpy(v) for k, v in sd.items()}, path)
  loaded = weights.load_state_dict(path)
  for k in sd:
    np.testing.assert_array_equal(loaded[k], sd[k])


def test_save_and_load_backbone_round_trip(tmp_path):
  source = tiny()
  resnet_part.import_torchvision(helpers.torchvision_state_dict(BLOCKS, WIDTH), source)
  path = str(tmp_path / 'backbone.npz')
  weights.save_npz(source, path)
  target = tiny()
  target.load(path)
  with pytest.raises(ValueError, match='backbone.pth'):
    weights.save_npz(source, str(tmp_path / 'backbone.pth'))
  a, b = forward(source), forward(target)
  for name in resnet.STAGES:
    np.testing.assert_array_equal(a[name], b[name])


@pytest.mark.parametrize('ext', ['npz', 'safetensors'])
def test_part_loads_a_torchvision_file_directly(tmp_path, ext):
  sd = helpers.torchvision_state_dict(BLOCKS, WIDTH)
  path = _write(tmp_path / f'resnet.{ext}', sd)
  direct, imported = tiny(), tiny()
  direct.load(path)
  resnet_part.import_torchvision(sd, imported)
  a, b = values(direct), values(imported)
  assert all(np.array_equal(a[p], b[p]) for p in a)


def test_load_backbone_rejects_wrong_file(tmp_path):
  model = tiny()
  good = str(tmp_path / 'good.npz')
  weights.save_npz(model, good)
  stored = dict(np.load(good))
  stored['conv1/kernel'] = stored['conv1/kernel'][..., :4]
  del stored['layer3/1/conv2/kernel']
  stored['layer3/2/conv1/kernel'] = stored['layer3/1/conv1/kernel']
  path = str(tmp_path / 'wrong.npz')
  np.savez(path, **stored)
  before = values(model)
  with pytest.raises(errors.ConfigError, match='wrong.npz') as e:
    model.load(path)
  message = str(e.value)
  assert '\n' not in message and 'resnet backbone' in message
  for error in ('shapes differ (1): conv1/kernel file (7, 7, 3, 4) model (7, 7, 3, 8)',
                'missing (1): layer3/1/conv2/kernel', 'extra (1): layer3/2/conv1/kernel'):
    assert error in message
  after = values(model)
  assert all(np.array_equal(before[p], after[p]) for p in before)
  with pytest.raises(FileNotFoundError, match='import_weights'):
    model.load(str(tmp_path / 'absent.npz'))


def test_weights_of_another_part_are_a_one_line_error(tmp_path):
  from cmsa_jax.models.text import embed  # pylint: disable=g-import-not-at-top
  path = str(tmp_path / 'text.npz')
  weights.save_npz(embed.Encoder(vocab_size=5, dim=3, rngs=nnx.Rngs(0)), path)
  with pytest.raises(errors.ConfigError) as e:
    tiny().load(path)
  message = str(e.value)
  assert '\n' not in message
  assert 'extra (1): embedding' in message and 'missing (' in message and 'conv1/kernel' in message


def run_cli(capsys, *args):
  argv = ['import_weights', *args, f'--blocks={",".join(map(str, BLOCKS))}',
          f'--width={WIDTH}']
  with flagsaver.flagsaver():
    flags.FLAGS(argv)
    import_weights.main(argv[:1])
  return capsys.readouterr().out


def test_cli_converts_npz(tmp_path, capsys):
  sd = helpers.torchvision_state_dict(BLOCKS, WIDTH)
  src, dst = str(tmp_path / 'resnet.npz'), str(tmp_path / 'backbone.npz')
  np.savez(src, **sd)
  out = run_cli(capsys, f'--input={src}', f'--output={dst}')
  assert 'ignored 2 ImageNet classifier' in out and f'wrote {dst}' in out
  direct, converted = tiny(), tiny()
  resnet_part.import_torchvision(sd, direct)
  converted.load(dst)
  a, b = values(direct), values(converted)
  assert all(np.array_equal(a[p], b[p]) for p in a)
  # Partial checkpoints need --allow_missing.
  np.savez(src, **{k: v for k, v in sd.items() if not k.startswith('layer4.')})
  with pytest.raises(errors.ConfigError, match=r'missing \(20\): layer4\.0\.bn1\.bias'):
    run_cli(capsys, f'--input={src}', f'--output={dst}')
  out = run_cli(capsys, f'--input={src}', f'--output={dst}',
                '--allow_missing=layer4.*,unused.*')
  assert 'kept initial values of 20 (allow_missing)' in out


@pytest.mark.slow  # Subprocess.
def test_cli_without_flags_says_where_weights_come_from(tmp_path):
  run = helpers.run_python(tmp_path, '-m', 'cmsa_jax.tools.import_weights')
  assert run.returncode != 0
  assert '--input and --output are required' in run.stderr
  assert 'resnet101-63fe2227.pth' in run.stderr
