"""JHMDB Sentences: one referring expression per J-HMDB video (Gavrilyuk et al., CVPR'18).

Evaluation only (split 'test'): models trained on A2D Sentences are tested here
without fine-tuning. One record per (expression, evaluated frame), with the
2τ+1 frame clip around it (edge-padded) and the actor's puppet mask.

Evaluated frames. J-HMDB has a puppet mask for every frame, but Gavrilyuk et
al. evaluate on three frames per video sampled uniformly, which the 'default'
config reproduces deterministically as the first, middle and last masked frame
(public loaders differ: MTTR draws 3 at random, others space 3 over [5, T-4]).
'all_frames' evaluates every masked frame. Some `part_mask` arrays cover fewer
frames than the video folder holds: only masked frames are evaluated, while
clips still draw on every frame of the folder.

The single object is the actor (id 0) with the action folder as category.
Frames are stored as JPEG (quality `video.JPEG_QUALITY`), about 5x smaller than
the source PNGs on a natural 320x240 image; records repeat frames across clips,
so this dominates the dataset's size.
"""

import collections
import dataclasses
import os
from pathlib import Path

import tensorflow_datasets as tfds
from absl import logging

from cmsa_jax.data import features
from cmsa_jax.data import video

_SOURCE = ('J-HMDB (Jhuang et al., ICCV 2013): http://jhmdb.is.tue.mpg.de/ and JHMDB Sentences '
           '(Gavrilyuk et al., CVPR 2018): https://kgavrilyuk.github.io/publication/actor_action/')

_CITATION = """
@inproceedings{gavrilyuk2018actor,
  title={Actor and Action Video Segmentation from a Sentence},
  author={Gavrilyuk, Kirill and Ghodrati, Amir and Li, Zhenyang and Snoek, Cees G. M.},
  booktitle={CVPR}, year={2018}}
@inproceedings{jhuang2013towards,
  title={Towards Understanding Action Recognition},
  author={Jhuang, Hueihan and Gall, Juergen and Zuffi, Silvia and Schmid, Cordelia and
          Black, Michael J.},
  booktitle={ICCV}, year={2013}}
"""


@dataclasses.dataclass(eq=False)
class JHMDBConfig(tfds.core.BuilderConfig):
  """`clip_radius` is τ; `frames_per_video` masked frames are evaluated (None: all)."""
  clip_radius: int = 5
  frames_per_video: int | None = 3


class Builder(tfds.core.GeneratorBasedBuilder):
  """JHMDB Sentences in the shared referring-segmentation video layout (`features.py`)."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [
      JHMDBConfig(name='default', description='3 uniformly sampled frames per video, τ = 5.'),
      JHMDBConfig(name='all_frames', frames_per_video=None,
                  description='Every frame with a puppet mask, τ = 5.'),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
  Put in the manual dir, from {_SOURCE}:
    jhmdb_annotation.txt
    Rename_Images/<action>/<video_id>/00001.png ...
    puppet_mask/<action>/<video_id>/puppet_mask.mat
  """

  def _info(self):
    return self.dataset_info_from_configs(
        features=features.referring_features(video=True),
        homepage='https://kgavrilyuk.github.io/publication/actor_action/',
        citation=_CITATION,
    )

  def _split_generators(self, dl_manager):
    root = Path(os.fspath(dl_manager.manual_dir))
    annotation = video.require(root / 'jhmdb_annotation.txt', _SOURCE)
    expressions = collections.defaultdict(list)
    for expression in video.read_jhmdb_annotations(annotation):
      expressions[expression.video_id].append(expression)
    if not expressions:
      raise ValueError(f'{annotation} holds no expressions')
    images = video.require(root / 'Rename_Images', _SOURCE)
    masks = video.require(root / 'puppet_mask', _SOURCE)
    return {'test': self._generate_examples(expressions, images, masks)}

  def _generate_examples(self, expressions, images, masks):
    """Yields each video's records; videos absent from Rename_Images are skipped, with a warning."""
    actions = video.index_videos(images, expressions)
    absent = [video_id for video_id in expressions if video_id not in actions]
    if len(absent) == len(expressions):
      raise FileNotFoundError(f'None of the {len(expressions)} annotated videos is in {images}'
                              f'/<action>/<video_id>/, e.g. {absent[0]}.')
    if absent:
      logging.warning('Skipped %d of %d videos absent from %s: %s',
                      len(absent), len(expressions), images, absent[:10])
    for video_id, action in actions.items():
      yield from self._video_examples(
          expressions[video_id], action, images / action / video_id,
          video.require(masks / action / video_id / 'puppet_mask.mat', _SOURCE))

  def _video_examples(self, expressions, action, folder, mask_path):
    """Records of one video, whose clip frames are read once."""
    part_mask = video.read_puppet_mask(mask_path)
    num_masked = min(len(part_mask), len(video.numbered_frames(folder)))
    count = self.builder_config.frames_per_video
    centers = (video.uniform_frame_ids(num_masked, count) if count
               else list(range(1, num_masked + 1)))
    radius = self.builder_config.clip_radius
    jpegs, num_frames = video.load_clip_frames(folder, centers, radius)
    for center in centers:
      mask = part_mask[center - 1]
      height, width = video.image_size(jpegs[center])
      if (height, width) != mask.shape:
        raise ValueError(f'{mask_path}: masks are {mask.shape} (H, W) but frame {center} '
                         f'of {folder} is {(height, width)}')
      objects = [{'mask': video.encode_mask(mask), 'id': 0, 'category': action}]
      frame_ids = video.clip_frame_ids(center, radius, num_frames)
      for e in expressions:
        yield f'{e.video_id}_{center:05d}_{e.id}', {
            'image': jpegs[center],
            'height': height,
            'width': width,
            'objects': objects,
            'sentences': [{'text': e.text, 'tokens': '', 'object_index': 0, 'id': e.id}],
            'frames': [jpegs[i] for i in frame_ids],
            'frame_ids': frame_ids,
            'video_id': e.video_id,
            'frame_index': center,
        }
