"""TFDS features shared by every referring-segmentation builder in `datasets/`.

One record layout serves images and videos, so one input pipeline reads them all.

Image datasets (ref_coco_seg, referit_seg, synthetic_ref) store one record per
image, so an image is stored once however many expressions refer into it:

  image        uint8 (H, W, 3), original size, encoded bytes passed through.
  height/width int32, original size.
  objects      Sequence of {mask: uint8 (H, W, 1) in {0, 1}, PNG; id: int64;
               category: Text, plus dataset-specific ids}. The objects the
               expressions refer to (and, where known, every other object).
  sentences    Sequence of {text: Text (raw expression); tokens: Text
               (space-joined tokens where the source has them, else '');
               object_index: int32 (index into `objects`); id: int64}.

Video datasets (a2d_sentences, jhmdb_sentences) store one record per
(expression, annotated frame): the same keys, with `image` the annotated frame,
`sentences` of length 1, and in addition

  frames       Sequence of uint8 (H, W, 3): the 2τ+1 frames centred on the
               annotated one, edge-padded (τ = the builder's clip_radius).
  frame_ids    Sequence of int32: the 1-indexed source frame of each entry.
  video_id     Text; frame_index int32 (1-indexed annotated frame).

Without TensorFlow, TFDS serializes one level of Sequence around Text but not
two, hence `tokens` is one space-joined string rather than a list.
"""

import numpy as np
import tensorflow_datasets as tfds


def mask_feature():
  return tfds.features.Image(shape=(None, None, 1), encoding_format='png')


def image_feature(encoding_format='jpeg'):
  return tfds.features.Image(shape=(None, None, 3), encoding_format=encoding_format)


def referring_features(*, image_format='jpeg', object_extra=None, sentence_extra=None,
                       video=False, frame_format='jpeg', **extra):
  """The common FeaturesDict; `*_extra` add dataset-specific id fields."""
  objects = {'mask': mask_feature(), 'id': np.int64, 'category': tfds.features.Text()}
  objects.update(object_extra or {})
  sentences = {'text': tfds.features.Text(), 'tokens': tfds.features.Text(),
               'object_index': np.int32, 'id': np.int64}
  sentences.update(sentence_extra or {})
  features = {
      'image': image_feature(image_format),
      'height': np.int32,
      'width': np.int32,
      'objects': tfds.features.Sequence(objects),
      'sentences': tfds.features.Sequence(sentences),
  }
  if video:
    features.update({
        'frames': tfds.features.Sequence(image_feature(frame_format)),
        'frame_ids': tfds.features.Sequence(np.int32),
        'video_id': tfds.features.Text(),
        'frame_index': np.int32,
    })
  features.update(extra)
  return tfds.features.FeaturesDict(features)
