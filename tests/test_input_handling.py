"""The bad-input matrix of README "Input handling": one test row per input, each
asserting its documented behaviour (a clear error naming the file or value, or
the handling the README states). Then: builders skip and count a broken example,
or stop at it with --strict."""

import io
import json
import logging
import os
import pickle
import re
from pathlib import Path
import shutil
import subprocess
import sys
import unicodedata

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

import helpers
from cmsa_jax import errors
from cmsa_jax.data import input_pipeline
from cmsa_jax.data import text
from cmsa_jax.media import image_io
from cmsa_jax.records import broken
from cmsa_jax.records import manual_files
from cmsa_jax.records import safe_pickle
from cmsa_jax.records import video
from cmsa_jax.run import checkpoints
from cmsa_jax.run import dataset
from cmsa_jax.run import metrics
from cmsa_jax.run import predict
from cmsa_jax.run import state as state_lib
from cmsa_jax.tools import build_dataset

ROOT = Path(__file__).resolve().parent.parent
DATASETS_DIR = build_dataset.DATASETS_DIR


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  """A workdir with an (untrained) tiny checkpoint that predict restores."""
  config = helpers.make_tiny_config()
  workdir = str(tmp_path_factory.mktemp('ckpt'))
  vocab = helpers.vocabulary(config, workdir)
  _, state, _ = state_lib.create_train_state(config, len(vocab))
  with checkpoints.checkpoint_manager(config, workdir) as mngr:
    mngr.save(1, args=checkpoints.checkpoint_items(state, config, vocab), force=True)
  return workdir


def _scene(height=30, width=40):
  """An RGB picture whose orientation shows: a gradient and a bright top-left corner."""
  y, x = np.mgrid[:height, :width]
  rgb = np.stack([6 * y, 6 * x, np.full_like(x, 90)], -1).astype(np.uint8)
  rgb[:8, :8] = 255
  return rgb


def _save(tmp_path, name, image, **options):
  path = tmp_path / name
  image.save(path, **options)
  return path


def _predict(workdir, tmp_path, path, expression='the red circle'):
  out = predict.predict(None, workdir, str(path), expression, str(tmp_path / 'out'))
  with Image.open(out['mask']) as mask:
    return np.asarray(mask)


def _jpeg_bytes(rgb):
  buffer = io.BytesIO()
  Image.fromarray(rgb).save(buffer, format='JPEG', quality=95)
  return buffer.getvalue()


# Rows. Each takes (tmp_path, workdir) and asserts the documented behaviour.

def corrupt_jpeg(tmp_path, workdir):
  path = tmp_path / 'corrupt.jpg'
  path.write_bytes(b'\xff\xd8\xff\xe0' + os.urandom(500))
  _refused_by_predict_and_builders(path, workdir, tmp_path)


def truncated_jpeg(tmp_path, workdir):
  path = tmp_path / 'truncated.jpg'
  path.write_bytes(_jpeg_bytes(_scene())[:300])
  _refused_by_predict_and_builders(path, workdir, tmp_path)


def _noise_png():
  return image_io.encode_png(np.random.default_rng(0).integers(0, 256, (30, 40, 3), np.uint8))


def corrupt_png(tmp_path, workdir):
  data = bytearray(_noise_png())
  data[100:400] = os.urandom(300)  # Inside the IDAT chunk: its CRC fails.
  path = tmp_path / 'corrupt.png'
  path.write_bytes(bytes(data))
  _refused_by_predict_and_builders(path, workdir, tmp_path)


def truncated_png(tmp_path, workdir):
  path = tmp_path / 'truncated.png'
  data = _noise_png()
  path.write_bytes(data[:len(data) // 2])
  _refused_by_predict_and_builders(path, workdir, tmp_path)


def _refused_by_predict_and_builders(path, workdir, tmp_path):
  with pytest.raises(errors.InputError, match=f'{path}: not a readable image'):
    predict.predict(None, workdir, str(path), 'the red circle', str(tmp_path / 'out'))
  with pytest.raises(errors.InputError, match=f'{path}: not a readable image'):
    image_io.read_jpeg(path)


def cmyk_jpeg(tmp_path, workdir):
  del workdir
  path = _save(tmp_path, 'cmyk.jpg', Image.fromarray(_scene()).convert('CMYK'), quality=95)
  _same_picture(path, _scene(), tolerance=6)


def sixteen_bit_png(tmp_path, workdir):
  del workdir
  gray16 = (np.arange(30 * 40).reshape(30, 40) * 54).astype(np.uint16)  # 0 .. 64746
  path = _save(tmp_path, 'gray16.png', Image.fromarray(gray16))
  assert Image.open(path).mode == 'I;16'
  expected = np.round(gray16 / 257).astype(np.uint8)  # Full 16-bit range -> full 8-bit range.
  _same_picture(path, np.repeat(expected[..., None], 3, -1), tolerance=1)


def rgba_png(tmp_path, workdir):
  del workdir
  rgba = np.concatenate([_scene(), np.full((30, 40, 1), 255, np.uint8)], -1)
  rgba[:, 20:, 3] = 0  # Right half transparent: black, as the padding.
  rgba[:, 10:20, 3] = 128
  path = _save(tmp_path, 'rgba.png', Image.fromarray(rgba, 'RGBA'))
  expected = (_scene().astype(np.uint16) * rgba[..., 3:] // 255).astype(np.uint8)
  _same_picture(path, expected, tolerance=1)


def palette_png(tmp_path, workdir):
  del workdir
  image = Image.fromarray(_scene()).quantize(16)
  path = _save(tmp_path, 'palette.png', image)
  _same_picture(path, np.asarray(image.convert('RGB')), tolerance=2)  # Sharp edges in JPEG.


def grayscale_jpeg(tmp_path, workdir):
  del workdir
  gray = _scene()[..., 1]
  path = _save(tmp_path, 'gray.jpg', Image.fromarray(gray), quality=95)
  _same_picture(path, np.repeat(gray[..., None], 3, -1), tolerance=4)


def _same_picture(path, expected, tolerance):
  """predict's loader and the builders' JPEG both give `expected` (mean abs error)."""
  loaded = predict.load_image(str(path))
  built, height, width = image_io.read_jpeg(path)
  with Image.open(io.BytesIO(built)) as im:
    assert im.format == 'JPEG' and im.mode in ('RGB', 'L')
    stored = np.asarray(im.convert('RGB'))
  assert loaded.shape == stored.shape == expected.shape == (height, width, 3)
  assert np.abs(loaded.astype(int) - expected).mean() <= tolerance
  assert np.abs(stored.astype(int) - expected).mean() <= tolerance + 3  # One more JPEG pass.


def exif_rotated_photo(tmp_path, workdir):
  displayed = _scene(30, 40)
  exif = Image.Exif()
  exif[0x0112] = 6  # "Rotate 90 CW to display": the file holds the picture turned 90 CCW.
  path = _save(tmp_path, 'rotated.jpg', Image.fromarray(np.rot90(displayed).copy()),
               quality=95, exif=exif.tobytes())
  assert Image.open(path).size == (30, 40)  # Stored sideways.
  _same_picture(path, displayed, tolerance=4)  # predict and builders: as displayed.
  assert _predict(workdir, tmp_path, path).shape == (30, 40)  # Mask of the displayed picture.


def one_pixel_image(tmp_path, workdir):
  path = _save(tmp_path, 'one.png', Image.new('RGB', (1, 1), (200, 10, 10)))
  assert _predict(workdir, tmp_path, path).shape == (1, 1)


def huge_image(tmp_path, workdir):
  path = _save(tmp_path, 'huge.png', Image.new('RGB', (10000, 10000), (20, 120, 40)))
  assert _predict(workdir, tmp_path, path).shape == (10000, 10000)


def empty_expression(tmp_path, workdir):
  _refused_expression(tmp_path, workdir, '', 'is empty')


def whitespace_expression(tmp_path, workdir):
  _refused_expression(tmp_path, workdir, ' \t\n ', 'is empty')


def unknown_words_only(tmp_path, workdir):
  _refused_expression(tmp_path, workdir, 'zebra xylophone', 'no word in the vocabulary')


def _refused_expression(tmp_path, workdir, expression, match):
  path = _save(tmp_path, 'ok.png', Image.new('RGB', (8, 8)))
  with pytest.raises(errors.InputError, match=match):
    predict.predict(None, workdir, str(path), expression, str(tmp_path / 'out'))
  ids, mask = text.Vocabulary.build(['the red circle']).encode(expression, 4)
  assert mask.sum() == max(1, len(expression.split()))  # Training data: <unk> words.
  assert all(ids[mask] == text.UNK) and all(ids[~mask] == text.PAD)


def more_than_20_words(tmp_path, workdir, caplog):
  words = ('the red circle left of the blue square ' * 4).split()  # 32 words.
  vocab = text.Vocabulary.build(['the red circle left of the blue square'])
  with caplog.at_level(logging.WARNING):
    ids, mask = vocab.encode(' '.join(words), 20, strict=True)
  assert mask.all() and list(ids) == [vocab.words.index(w) for w in words[:20]]
  assert 'has 32 words; the model reads the first 20' in caplog.text
  assert ' '.join(words[20:]) in caplog.text  # The ignored words, named.
  path = _save(tmp_path, 'ok.png', Image.new('RGB', (8, 8)))
  assert _predict(workdir, tmp_path, path, ' '.join(words)).shape == (8, 8)


def non_ascii_and_emoji(tmp_path, workdir):
  composed, decomposed = 'the café circle', unicodedata.normalize('NFD', 'the café circle')
  assert composed != decomposed
  assert text.tokenize(composed) == text.tokenize(decomposed) == ['the', 'café', 'circle']
  assert text.tokenize('the ＲＥＤ 圆 🔴!') == ['the', 'red', '圆', '🔴!']
  vocab = text.Vocabulary.build(['the red circle'])
  ids, _ = vocab.encode('the red 🔴', 4)
  assert list(ids) == [vocab.words.index('the'), vocab.words.index('red'), text.UNK, 0]
  path = _save(tmp_path, 'ok.png', Image.new('RGB', (8, 8)))
  assert _predict(workdir, tmp_path, path, 'the red circle 🔴 café').shape == (8, 8)


class _Source:
  """A one-record source in the records layout."""

  def __init__(self, image, mask):
    self.record = {'image': image, 'objects': {'mask': [mask]},
                   'sentences': {'text': ['the thing'], 'object_index': [0]}}

  def __len__(self):
    return 1

  def __getitem__(self, i):
    return self.record


def _first_example(image, mask):
  vocab = text.Vocabulary.build(['the thing'])
  source = _Source(image, mask)
  return next(iter(input_pipeline.create_eval_iterator(source, vocab, batch_size=1,
                                                       image_size=16)))


def empty_ground_truth_mask(tmp_path, workdir):
  del tmp_path, workdir
  batch = _first_example(np.zeros((10, 12, 3), np.uint8), np.zeros((10, 12), np.uint8))
  assert batch['mask'].sum() == 0 and not batch['orig_mask'][0].any()
  both_empty = metrics.intersection_union(np.zeros((10, 12), bool), batch['orig_mask'][0])
  predicted = metrics.intersection_union(np.ones((10, 12), bool), batch['orig_mask'][0])
  assert metrics.iou(*both_empty) == 1.0 and metrics.iou(*predicted) == 0.0  # Agree; then 0.
  assert metrics.summarize(*zip(both_empty, predicted))['overall_iou'] == 0.0


def mask_size_differs_from_image(tmp_path, workdir):
  del tmp_path, workdir
  with pytest.raises(ValueError, match=r'record 0: mask of object 0 has shape \(9, 12\), '
                                       r'image has \(10, 12\)'):
    _first_example(np.zeros((10, 12, 3), np.uint8), np.zeros((9, 12), np.uint8))


def missing_manual_file(tmp_path, workdir):
  del workdir
  with pytest.raises(FileNotFoundError, match=f'{tmp_path}/refs.p not found. It comes from X'):
    manual_files.require(tmp_path / 'refs.p', 'X')


def malformed_csv_row(tmp_path, workdir):
  del workdir
  path = tmp_path / 'videoset.csv'
  path.write_text('v1,11,0,1,320,480,10,3,0\nv2,11,0,1\n')
  with pytest.raises(ValueError, match=f'{path}:2: expected 9 fields, got 4'):
    video.read_a2d_videoset(path)


class _RunsCommand:

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (os.system, (f'touch {self.marker}',))


def malicious_pickle(tmp_path, workdir):
  del workdir
  marker = tmp_path / 'pwned'
  path = tmp_path / 'refs(unc).p'
  path.write_bytes(pickle.dumps([{'ref_id': 1, 'x': _RunsCommand(marker)}], protocol=2))
  with pytest.raises(pickle.UnpicklingError, match=r'refusing global (posix|os)\.system'):
    safe_pickle.load(path)
  assert not marker.exists()


def nan_inf_pixels_in_float_input(tmp_path, workdir):
  del workdir
  pixels = np.full((6, 7), 0.5, np.float32)
  pixels[2, 3], pixels[4, 4] = np.nan, np.inf
  path = _save(tmp_path, 'float.tif', Image.fromarray(pixels, 'F'))
  for load in (predict.load_image, image_io.read_jpeg):
    with pytest.raises(errors.InputError, match=f'{path}: 2 pixels are NaN or infinite'):
      load(str(path))
  pixels[2, 3], pixels[4, 4] = 0.25, 1.0  # Finite float in [0, 1]: scaled to 0..255.
  path = _save(tmp_path, 'float_ok.tif', Image.fromarray(pixels, 'F'))
  loaded = predict.load_image(str(path))
  assert loaded.dtype == np.uint8 and loaded[2, 3, 0] == 64 and loaded[0, 0, 0] == 128
  pixels[0, 0] = 7.0
  path = _save(tmp_path, 'float_range.tif', Image.fromarray(pixels, 'F'))
  with pytest.raises(errors.InputError, match=r'range over \[0.25, 7.0\]; expected \[0.0, 1.0\]'):
    predict.load_image(str(path))


def _main(tmp_path, *flags):
  return subprocess.run([sys.executable, 'main.py', '--config=configs/demo.py',
                         f'--workdir={tmp_path}', *flags], cwd=ROOT, capture_output=True,
                        text=True, timeout=300, env=dict(os.environ, JAX_PLATFORMS='cpu'))


def unknown_config_key(tmp_path, workdir):
  del workdir
  out = _main(tmp_path, '--config.no_such_key=1')
  assert out.returncode != 0 and 'Traceback' not in out.stderr
  assert re.search(r"Error: unknown config field \S*no_such_key", out.stderr), out.stderr


def config_value_of_wrong_type(tmp_path, workdir):
  del workdir
  out = _main(tmp_path, '--config.batch_size=sixteen')
  assert out.returncode != 0 and 'Traceback' not in out.stderr
  assert "Error: flag --config.batch_size=sixteen: invalid literal for int()" in out.stderr


ROWS = [corrupt_jpeg, truncated_jpeg, corrupt_png, truncated_png, cmyk_jpeg, sixteen_bit_png,
        rgba_png, palette_png, grayscale_jpeg, exif_rotated_photo, one_pixel_image, huge_image,
        empty_expression, whitespace_expression, more_than_20_words, unknown_words_only,
        non_ascii_and_emoji, empty_ground_truth_mask, mask_size_differs_from_image,
        missing_manual_file, malformed_csv_row, malicious_pickle, nan_inf_pixels_in_float_input,
        unknown_config_key, config_value_of_wrong_type]


@pytest.mark.parametrize('row', ROWS, ids=[row.__name__ for row in ROWS])
def test_input_handling(row, tmp_path, workdir, request):
  if 'caplog' in row.__code__.co_varnames[:row.__code__.co_argcount]:
    row(tmp_path, workdir, request.getfixturevalue('caplog'))
  else:
    row(tmp_path, workdir)


def test_readme_documents_every_row():
  readme = (ROOT / 'README.md').read_text()
  table = readme[readme.index('## Input handling'):]
  table = table[:table.index('\n## ', 1)]
  for row in ROWS:
    assert f'`{row.__name__}`' in table, row.__name__


# Long builds: one broken example per builder is skipped and counted; --strict stops at it.

def _break_ref_coco(root):
  """A second train image (25) whose annotation 202 has a bad polygon."""
  shutil.copytree(DATASETS_DIR / 'ref_coco_seg' / 'dummy_data', root)
  refs_path = root / 'refcoco' / 'refs(unc).p'
  refs = pickle.loads(refs_path.read_bytes(), encoding='bytes')
  for ref in refs:
    if ref[b'image_id'] == 25:
      ref[b'split'] = b'train'
  refs_path.write_bytes(pickle.dumps(refs, protocol=2))
  coco = json.loads((root / 'refcoco' / 'instances.json').read_text())
  for ann in coco['annotations']:
    if ann['id'] == 202:
      ann['segmentation'] = [[1, 2, 'three', 4, 5, 6]]
  (root / 'refcoco' / 'instances.json').write_text(json.dumps(coco))
  return root, 'train', 2, 'image 25', 1


def _break_referit(root):
  """Image 101 of trainval is not an image."""
  shutil.copytree(DATASETS_DIR / 'referit_seg' / 'dummy_data', root)
  (root / 'images' / '101.jpg').write_bytes(b'<html>404</html>')
  return root, 'trainval', 2, 'image 101', 1


def _break_a2d(root):
  """The dummy data's test video absentVid4 has neither frames nor masks."""
  with tfds.core.utils.add_sys_path(DATASETS_DIR):
    from a2d_sentences import make_dummy_data  # pylint: disable=g-import-not-at-top
  return make_dummy_data.write(root), 'test', 2, 'video absentVid4', 2


def _break_jhmdb(root):
  """The pull-up video's puppet mask is missing (and the dummy data's Absent_video has no frames)."""
  with tfds.core.utils.add_sys_path(DATASETS_DIR):
    from jhmdb_sentences import make_dummy_data  # pylint: disable=g-import-not-at-top
  make_dummy_data.write(root)
  (root / 'puppet_mask' / 'pullup' / make_dummy_data.PULLUP / 'puppet_mask.mat').unlink()
  return root, 'test', 3, 'video 32_Pull-ups', 3


BROKEN_BUILDS = {'ref_coco_seg/refcoco_unc': _break_ref_coco, 'referit_seg': _break_referit,
                 'a2d_sentences/single_frame': _break_a2d, 'jhmdb_sentences/default': _break_jhmdb}


@pytest.mark.parametrize('spec', list(BROKEN_BUILDS))
def test_builders_skip_and_count_broken_examples_or_stop_in_strict_mode(tmp_path, spec):
  manual_dir, split, total, broken_name, records = BROKEN_BUILDS[spec](tmp_path / 'manual')
  reported = len(broken.report())
  builder = build_dataset.make_builder(spec, tmp_path / 'data')
  build_dataset.prepare(builder, manual_dir)
  skipped = 2 if spec.startswith('jhmdb') else 1  # JHMDB's dummy data lacks a video too.
  line = broken.report()[reported:][0]
  assert line.startswith(f'skipped {skipped} of {total} ') and broken_name.split()[-1] in line
  assert line in build_dataset.summary(builder)
  assert builder.info.splits[split].num_examples == records

  with pytest.raises((errors.InputError, FileNotFoundError), match=broken_name.split()[-1]):
    build_dataset.prepare(build_dataset.make_builder(spec, tmp_path / 'strict'), manual_dir,
                          strict=True)
