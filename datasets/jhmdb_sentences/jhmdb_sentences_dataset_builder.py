"""JHMDB Sentences: one referring expression per J-HMDB video (see README.md).

Evaluation only (split 'test'). One record per (expression, evaluated frame),
with the 2τ+1 frame clip around it and the actor's puppet mask.
"""

import collections
import dataclasses
import os
from pathlib import Path

import tensorflow_datasets as tfds

from cmsa_jax.media import clips
from cmsa_jax.media import frames
from cmsa_jax.media import image_io
from cmsa_jax.records import broken
from cmsa_jax.records import features
from cmsa_jax.records import manual_files
from cmsa_jax.records import video

_SOURCE = ('J-HMDB (Jhuang et al., ICCV 2013): http://jhmdb.is.tue.mpg.de/ and JHMDB Sentences '
           '(Gavrilyuk et al., CVPR 2018): https://kgavrilyuk.github.io/publication/actor_action/')


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
    )

  def _split_generators(self, dl_manager):
    root = Path(os.fspath(dl_manager.manual_dir))
    annotation = manual_files.require(root / 'jhmdb_annotation.txt', _SOURCE)
    expressions = collections.defaultdict(list)
    for expression in video.read_jhmdb_annotations(annotation):
      expressions[expression.video_id].append(expression)
    if not expressions:
      raise ValueError(f'{annotation} holds no expressions')
    frame_root = manual_files.require(root / 'Rename_Images', _SOURCE)
    mask_root = manual_files.require(root / 'puppet_mask', _SOURCE)
    return {'test': self._generate_examples(expressions, frame_root, mask_root)}

  def _generate_examples(self, expressions, frame_root, mask_root):
    """Yields each video's records; a video absent from Rename_Images, or whose files are
    broken, is skipped and counted (see cmsa_jax/records/broken.py)."""
    actions = video.index_videos(frame_root, expressions)

    def make(video_id):
      if video_id not in actions:
        raise FileNotFoundError(f'{frame_root}/<action>/{video_id}/ not found')
      action = actions[video_id]
      mask_path = manual_files.require(mask_root / action / video_id / 'puppet_mask.mat', _SOURCE)
      return list(self._video_examples(expressions[video_id], action,
                                       frame_root / action / video_id, mask_path))

    yield from broken.examples(((v, v) for v in expressions), make, 'video')

  def _video_examples(self, expressions, action, folder, mask_path):
    """Records of one video, whose clip frames are read once."""
    part_mask = video.read_puppet_mask(mask_path)
    num_masked = min(len(part_mask), len(frames.numbered_frames(folder)))
    count = self.builder_config.frames_per_video
    centers = (video.uniform_frame_ids(num_masked, count) if count
               else list(range(1, num_masked + 1)))
    radius = self.builder_config.clip_radius
    jpegs, num_frames = frames.load_clip_frames(folder, centers, radius)
    for center in centers:
      mask = part_mask[center - 1]
      clip = clips.clip_fields(jpegs, center, radius, num_frames, masks=mask, masks_path=mask_path)
      objects = [{'mask': image_io.encode_png(mask), 'id': 0, 'category': action}]
      for e in expressions:
        yield f'{e.video_id}_{center:05d}_{e.id}', dict(
            clip, objects=objects, video_id=e.video_id,
            sentences=[{'text': e.text, 'tokens': '', 'object_index': 0, 'id': e.id}])
