"""Video end to end: configs/a2d.py trained a few steps and evaluated on the A2D
builder's dummy data, configs/jhmdb.py evaluating that checkpoint, and prediction
on a video file or a folder of frames, with its bad inputs."""

import json
import os

import av
import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

import helpers
from cmsa_jax import errors
from cmsa_jax.data import categories
from cmsa_jax.media import clips as clips_lib
from cmsa_jax.run import checkpoints
from cmsa_jax.run import evaluate
from cmsa_jax.run import launch
from cmsa_jax.run import predict_video
from cmsa_jax.run import train
from cmsa_jax.tools import build_dataset
from configs import a2d
from configs import jhmdb

pytestmark = pytest.mark.slow  # Dataset builds and training runs.

with tfds.core.utils.add_sys_path(build_dataset.DATASETS_DIR):
  from a2d_sentences import make_dummy_data as a2d_dummy  # pylint: disable=g-import-not-at-top
  from jhmdb_sentences import make_dummy_data as jhmdb_dummy  # pylint: disable=g-import-not-at-top


def _shrink(config, data_dir):
  """A paper config with the tiny model of the tests, on dummy data."""
  tiny = helpers.make_tiny_config()
  for key in ('backbone_args', 'text_args', 'attn_dim', 'fusion_dim'):
    config.model[key] = tiny.model[key]
  config.update(data_dir=str(data_dir), image_size=32, max_words=8, num_workers=0,
                batch_size=2, eval_batch_size=2, num_train_steps=2, log_every_steps=1,
                checkpoint_every_steps=2, crf=False)
  return config


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """configs/a2d.py trained 2 steps on A2D's dummy data (clips of 11 frames from
  videos of 4 and 7 frames: edge-padded), its data_dir also holding JHMDB's."""
  tmp = tmp_path_factory.mktemp('video')
  for spec, write in (('a2d_sentences/default', a2d_dummy.write),
                      ('jhmdb_sentences/default', jhmdb_dummy.write)):
    build_dataset.prepare(build_dataset.make_builder(spec, tmp / 'tfds'),
                          write(tmp / spec.split('/')[0]))
  config = _shrink(a2d.get_config(), tmp / 'tfds')
  workdir = str(tmp / 'run')
  return config, workdir, train.train_and_evaluate(config, workdir)


def test_a2d_trains_and_evaluates_per_annotated_frame(trained):
  _, workdir, metrics = trained
  assert metrics['num_examples'] == 2 and metrics['step'] == 2  # The test split's 2 frames.
  for key in ('overall_iou', 'mean_iou', 'prec@0.5', 'prec@0.9'):
    assert 0 <= metrics[key] <= 1
  with open(os.path.join(workdir, 'eval', 'metrics.json')) as f:
    assert json.load(f)['overall_iou'] == metrics['overall_iou']
  assert 'prec@0.5' in open(os.path.join(workdir, 'eval', 'metrics.md')).read()
  # Real expressions are scored per category (data/categories.py) and length, not family.
  with open(os.path.join(workdir, 'eval', 'samples.jsonl')) as f:
    samples = [json.loads(line) for line in f]
  assert all(s['groups'] == categories.groups(s['expression']) for s in samples)
  for group in {g for s in samples for g in s['groups']}:
    assert metrics[f'category_{group}_num_examples'] == sum(group in s['groups'] for s in samples)
  assert not any(k.startswith('family_') for k in metrics)
  assert 'CMSA by expression category' in open(os.path.join(workdir, 'eval', 'metrics.md')).read()


def test_jhmdb_evaluates_the_a2d_checkpoint_without_training(trained):
  config, workdir, a2d_metrics = trained
  config = _shrink(jhmdb.get_config(), config.data_dir)
  metrics = evaluate.evaluate(config, workdir)
  assert metrics['num_examples'] == 6 and metrics['step'] == 2
  with open(os.path.join(workdir, 'eval_jhmdb', 'metrics.json')) as f:
    assert json.load(f)['num_examples'] == 6
  with open(os.path.join(workdir, 'eval', 'metrics.json')) as f:  # A2D's are kept.
    assert json.load(f)['num_examples'] == a2d_metrics['num_examples']
  with pytest.raises(errors.ConfigError, match='no training split'):
    launch.launch('train', config, workdir)


def _write_mp4(path, num_frames, size=(32, 48)):
  with av.open(str(path), 'w') as container:
    stream = container.add_stream('libx264', rate=24)
    stream.height, stream.width, stream.pix_fmt = size[0], size[1], 'yuv420p'
    for i in range(num_frames):
      frame = np.full(size + (3,), 20 * i, np.uint8)
      container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format='rgb24')))
    container.mux(stream.encode())


def _write_folder(path, ids, size=(32, 48)):
  path.mkdir()
  for i in ids:
    Image.fromarray(np.full(size + (3,), 10 * i, np.uint8)).save(path / f'{i:05d}.png')
  return path


@pytest.mark.parametrize('source', ['mp4', 'folder'])
def test_predict_on_a_video_shorter_than_the_clip(trained, tmp_path, source):
  _, workdir, _ = trained
  if source == 'mp4':
    path = tmp_path / 'clip.mp4'
    _write_mp4(path, 4)
  else:
    path = _write_folder(tmp_path / 'frames', range(1, 5))
  out = predict_video.predict_video(None, workdir, str(path), 'a dog running',
                                    str(tmp_path / 'out'), frame=1)
  masks = sorted(os.listdir(out['masks']))
  assert masks == [f'{i:05d}.png' for i in range(1, 5)]
  with Image.open(os.path.join(out['masks'], masks[0])) as mask:
    assert mask.size == (48, 32)
  with Image.open(out['overlay']) as gif:
    assert gif.n_frames == 4 and gif.size == (48, 32)
  assert os.path.getsize(out['frame_attention']) > 1000
  assert os.path.getsize(out['object_attention']) > 1000


def test_object_attention_is_a_share_of_the_objects_attention(trained, tmp_path):
  """Per level the maps over the clip's valid frames sum to 1, padded frames get 0."""
  _, workdir, _ = trained
  model, saved, vocab, _ = checkpoints.restore_model(workdir)
  frames = [np.full((32, 48, 3), 10 * i, np.uint8) for i in range(1, 5)]
  clip = np.asarray(clips_lib.clip_frame_ids(1, saved.clip_radius, len(frames))) - 1
  maps, resized = predict_video.object_attention(
      model, vocab, frames, 'a dog running', clip, image_size=saved.image_size,
      max_words=saved.max_words)
  assert maps.shape[:2] == (len(model.levels), len(clip))
  assert resized.shape == (len(clip), saved.image_size, saved.image_size, 3)
  valid = clips_lib.clip_mask(clip)
  np.testing.assert_allclose(maps.sum((2, 3))[:, valid].sum(1), 1, atol=1e-4)
  assert not valid.all() and np.all(maps[:, ~valid] == 0)


def test_predict_video_bad_input(trained, tmp_path):
  _, workdir, _ = trained
  good = tmp_path / 'good.mp4'
  _write_mp4(good, 6)
  (tmp_path / 'cut.mp4').write_bytes(good.read_bytes()[:len(good.read_bytes()) // 2])
  (tmp_path / 'notes.mp4').write_text('not a video')
  gaps = _write_folder(tmp_path / 'gaps', (1, 2, 4))
  sizes = _write_folder(tmp_path / 'sizes', (1, 2))
  Image.new('RGB', (10, 10)).save(sizes / '00003.png')
  run = lambda path, **kw: predict_video.predict_video(
      None, workdir, str(path), 'a dog running', str(tmp_path / 'out'), **kw)
  for path, match in (('cut.mp4', 'cut.mp4: not a readable video'),
                      ('notes.mp4', 'notes.mp4: not a readable video'),
                      ('gaps', r'gaps: frame files must be numbered 1..n, found \[1, 2, 4\]'),
                      ('sizes', 'sizes: frames differ in size')):
    with pytest.raises(errors.InputError, match=match):
      run(tmp_path / path)
  with pytest.raises(errors.NotFoundError, match='missing.mp4'):
    run(tmp_path / 'missing.mp4')
  with pytest.raises(errors.ConfigError, match='--frame=7'):
    run(good, frame=7)
