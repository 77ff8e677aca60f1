"""Fuzzed dataset records through the input pipeline: PNG masks and clip frames that are
truncated, mutated, of another size or mode, as a hand-made or damaged dataset holds them.

`create_eval_iterator` gives a batch, or an `errors.UserError` naming the record and
object (property in tests/fuzzing.py).
"""

import io

from hypothesis import example
from hypothesis import given
from hypothesis import strategies as st
import numpy as np
from PIL import Image
import pytest

import fuzzing
from cmsa_jax.data import input_pipeline
from cmsa_jax.data import text

pytestmark = pytest.mark.fuzz

VOCAB = text.Vocabulary.build(['the red circle'])
HEIGHT, WIDTH = 10, 12


def _png(array, mode=None):
  buffer = io.BytesIO()
  Image.fromarray(array).convert(mode or Image.fromarray(array).mode).save(buffer, format='PNG')
  return buffer.getvalue()


MASK = _png((np.arange(HEIGHT * WIDTH).reshape(HEIGHT, WIDTH) % 3 == 0).astype(np.uint8))
FRAME = _png(np.full((HEIGHT, WIDTH, 3), 90, np.uint8))
encoded = st.one_of(
    fuzzing.mutated(MASK), fuzzing.mutated(FRAME), st.binary(max_size=32),
    st.builds(lambda h, w, mode: _png(np.ones((h, w), np.uint8), mode), st.integers(1, 12),
              st.integers(1, 14), st.sampled_from(['1', 'L', 'P', 'RGB', 'RGBA', 'I;16'])))


def _record(mask, frames):
  record = {'image': np.zeros((HEIGHT, WIDTH, 3), np.uint8), 'objects': {'mask': [mask]},
            'sentences': {'text': ['the red circle'], 'object_index': [0]}}
  if frames is not None:
    record.update(frames=frames, frame_ids=np.arange(1, len(frames) + 1), frame_index=2)
  return record


@fuzzing.budget(40)
@given(mask=encoded | st.just(MASK), frames=st.none() | st.lists(
    encoded | st.just(FRAME), min_size=3, max_size=3))
# Crashes found and fixed in input_pipeline._pixels: OSError from a damaged PNG.
@example(mask=MASK[:40], frames=None)
@example(mask=MASK, frames=[FRAME, FRAME[:50], FRAME])
def test_record_masks_and_frames(tmp_path_factory, mask, frames):
  sandbox = tmp_path_factory.mktemp('records')
  clip_radius = None if frames is None else 1
  batch = fuzzing.check(
      lambda: next(input_pipeline.create_eval_iterator(
          [_record(mask, frames)], VOCAB, batch_size=1, image_size=16, clip_radius=clip_radius,
          with_baselines=True)),
      name='record 0', sandbox=sandbox, given=sandbox)
  if batch is not None:
    assert batch['mask'].shape == (1, 16, 16) and set(np.unique(batch['mask'])) <= {0, 1}
    assert batch['orig_mask'][0].shape == (HEIGHT, WIDTH)
