"""Training input pipeline throughput (examples/s) for several worker counts.

  python benchmarks/input_pipeline.py --image_size=320 --workers=0,1,2 --json
  python benchmarks/input_pipeline.py --config=configs/demo.py --json

With --config: the config's source (the memory source below when its TFDS
dataset is not built), image size, word cap, batch and worker count, next to
the images/s its train step consumes (benchmarks/train_step.py, run in a
subprocess with the same --config flags after the pipeline is timed).

Source: SyntheticSource (procedural scenes, rendered on access), `memory`
(pre-decoded COCO-sized 480x640 records: resizing and batching only), or a
prepared TFDS dataset with --dataset and --data_dir (decoding included).
"""

import json
import os
import subprocess
import sys
import time

from absl import app
from absl import flags
from ml_collections import config_flags
import numpy as np
import tensorflow_datasets as tfds

from cmsa_jax import errors
from cmsa_jax.data import input_pipeline
from cmsa_jax.data import text
from cmsa_jax.run import dataset

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Measure this config\'s pipeline '
                                          'and train step (overrides the flags below).')

_IMAGE_SIZE = flags.DEFINE_integer('image_size', 320, 'Network input side S.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 16, 'Examples per batch.')
_NUM_BATCHES = flags.DEFINE_integer('num_batches', 20, 'Batches timed, after one warm-up batch.')
_WORKERS = flags.DEFINE_list('workers', ['0', '1', '2'], 'Worker process counts to time.')
_SOURCE = flags.DEFINE_enum('source', 'synthetic', ['synthetic', 'memory'],
                            'Source when --dataset is not given.')
_NUM_RECORDS = flags.DEFINE_integer('num_records', 64, 'Records of the synthetic/memory source.')
_DATASET = flags.DEFINE_string('dataset', None, 'TFDS name (e.g. ref_coco_seg/unc) to read.')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data_dir holding --dataset.')
_JSON = flags.DEFINE_bool('json', False, 'Print the results as JSON on the last line.')


def memory_source(num_records, *, height=480, width=640, num_objects=6, seed=0):
  """Decoded records with smooth images and box masks, 3 expressions each."""
  rng = np.random.default_rng(seed)
  records = []
  for _ in range(num_records):
    small = rng.integers(0, 256, (height // 16, width // 16, 3), dtype=np.uint8)
    masks = []
    for _ in range(num_objects):
      y, x = rng.integers(0, height - 64), rng.integers(0, width - 64)
      mask = np.zeros((height, width, 1), np.uint8)
      mask[y:y + rng.integers(16, 200), x:x + rng.integers(16, 200)] = 1
      masks.append(mask)
    records.append({
        'image': small.repeat(16, 0).repeat(16, 1),
        'objects': {'mask': masks},
        'sentences': {'text': [b'the man on the left', b'red car', b'small dog near the table'],
                      'object_index': [np.int32(k) for k in range(3)]},
    })
  return records


def load_source():
  config = _CONFIG.value
  if config:
    try:
      return config.dataset, dataset.load_source(config, config.train_split)
    except errors.NotFoundError:
      return 'memory', memory_source(_NUM_RECORDS.value)
  if _DATASET.value:
    return _DATASET.value, tfds.data_source(_DATASET.value, split='train', data_dir=_DATA_DIR.value,
                                            download=False)
  if _SOURCE.value == 'synthetic':
    try:
      from cmsa_jax.data import synthetic  # pylint: disable=g-import-not-at-top
      return 'synthetic', synthetic.SyntheticSource('train', _NUM_RECORDS.value,
                                                    image_size=_IMAGE_SIZE.value)
    except ImportError:
      pass
  return 'memory', memory_source(_NUM_RECORDS.value)


def settings():
  """(image_size, max_words, batch_size, worker counts) to time."""
  config = _CONFIG.value
  if config:
    return config.image_size, config.max_words, config.batch_size, [config.num_workers]
  return _IMAGE_SIZE.value, 20, _BATCH_SIZE.value, list(map(int, _WORKERS.value))


def train_step_images_per_s():
  """images/s of the config's train step, from benchmarks/train_step.py --json."""
  script = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'train_step.py')
  config_args = [a for a in sys.argv[1:] if a.startswith('--config')]
  out = subprocess.run([sys.executable, script, '--json'] + config_args, capture_output=True,
                       text=True, check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])['images_per_s']


def examples_per_second(source, vocab, index, num_workers, *, image_size, max_words,
                        batch_size):
  it = input_pipeline.create_train_iterator(
      source, vocab, batch_size=batch_size, image_size=image_size, max_words=max_words, seed=0,
      num_workers=num_workers, index=index)
  next(it)  # Starts the workers and fills the buffers.
  start = time.perf_counter()
  for _ in range(_NUM_BATCHES.value):
    next(it)
  rate = _NUM_BATCHES.value * batch_size / (time.perf_counter() - start)
  it.close()
  return rate


def main(argv):
  del argv
  name, source = load_source()
  image_size, max_words, batch_size, workers = settings()
  start = time.perf_counter()
  index = input_pipeline.sentence_index(source)
  index_ms = (time.perf_counter() - start) / len(source) * 1e3
  vocab = text.Vocabulary.build(index.texts)
  print(f'source {name}: {len(source)} records, {len(index)} expressions, '
        f'sentence_index {index_ms:.2f} ms/record; image_size {image_size}, batch {batch_size}')
  rates = {}
  for n in workers:
    rates[n] = examples_per_second(source, vocab, index, n, image_size=image_size,
                                   max_words=max_words, batch_size=batch_size)
    print(f'num_workers={n}: {rates[n]:.1f} train examples/s')
  result = {'source': name, 'image_size': image_size, 'batch_size': batch_size,
            'sentence_index_ms_per_record': index_ms,
            'examples_per_s': {str(k): round(v, 1) for k, v in rates.items()}}
  if _CONFIG.value:
    consumed = train_step_images_per_s()
    result.update(train_step_images_per_s=round(consumed, 2),
                  pipeline_over_step=round(rates[workers[0]] / consumed, 2))
    print(f'train step consumes {consumed:.1f} images/s: the pipeline makes '
          f'{result["pipeline_over_step"]}x that')
  if _JSON.value:
    print(json.dumps(result))


if __name__ == '__main__':
  app.run(main)
