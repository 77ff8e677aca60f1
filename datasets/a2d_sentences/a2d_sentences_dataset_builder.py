"""A2D Sentences: referring expressions for the actors of A2D videos (see README.md).

One record per (expression, annotated frame in which its instance has a mask),
with the 2τ+1 frame clip around that frame and every instance annotated there.
"""

import collections
import dataclasses
import os
import re
from pathlib import Path

from absl import logging
import tensorflow_datasets as tfds

from cmsa_jax.media import clips
from cmsa_jax.media import frames
from cmsa_jax.media import image_io
from cmsa_jax.records import broken
from cmsa_jax.records import features
from cmsa_jax.records import manual_files
from cmsa_jax.records import video

_A2D = 'the A2D dataset (Xu et al., CVPR 2015): https://web.eecs.umich.edu/~jjcorso/r/a2d/'
_SENTENCES = ('A2D Sentences (Gavrilyuk et al., CVPR 2018): '
              'https://kgavrilyuk.github.io/publication/actor_action/')
_SUBSETS = {0: 'train', 1: 'test'}


@dataclasses.dataclass(eq=False)
class A2DConfig(tfds.core.BuilderConfig):
  """`clip_radius` is τ: each record holds the 2τ+1 frames centred on the annotated one."""
  clip_radius: int = 5


class Builder(tfds.core.GeneratorBasedBuilder):
  """A2D Sentences in the shared referring-segmentation video layout (`features.py`)."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [
      A2DConfig(name='default', clip_radius=5, description='Clips of 11 frames (τ = 5).'),
      A2DConfig(name='single_frame', clip_radius=0, description='The annotated frame only.'),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
  Put in the manual dir, from {_A2D}:
    Release/videoset.csv
    Release/clips320H/<video_id>.mp4   or pre-extracted   Release/frames/<video_id>/00001.jpg ...
  and from {_SENTENCES}:
    text_annotations/a2d_annotation.txt
    text_annotations/a2d_missed_videos.txt
    text_annotations/a2d_annotation_with_instances/<video_id>/00001.h5 ...
  """

  def _info(self):
    return self.dataset_info_from_configs(
        features=features.referring_features(video=True),
        homepage='https://kgavrilyuk.github.io/publication/actor_action/',
    )

  def _split_generators(self, dl_manager):
    root = Path(os.fspath(dl_manager.manual_dir))
    release = manual_files.require(root / 'Release', _A2D)
    text = manual_files.require(root / 'text_annotations', _SENTENCES)
    videos = video.read_a2d_videoset(manual_files.require(release / 'videoset.csv', _A2D))
    missed = set(video.read_lines(manual_files.require(text / 'a2d_missed_videos.txt', _SENTENCES)))
    expressions = collections.defaultdict(list)
    for expression in video.read_a2d_annotations(
        manual_files.require(text / 'a2d_annotation.txt', _SENTENCES)):
      expressions[expression.video_id].append(expression)
    masks = manual_files.require(text / 'a2d_annotation_with_instances', _SENTENCES)
    unlisted = sorted(set(expressions) - {v.video_id for v in videos})
    if unlisted:
      logging.warning('%s: skipping %d expressions of %d videos absent from %s: %s',
                      text / 'a2d_annotation.txt', sum(len(expressions[i]) for i in unlisted),
                      len(unlisted), release / 'videoset.csv', unlisted[:10])

    splits = {name: [] for name in _SUBSETS.values()}
    for v in videos:
      if v.subset not in _SUBSETS:
        raise ValueError(f'{release / "videoset.csv"}: video {v.video_id} has subset '
                         f'{v.subset}, expected 0 (train) or 1 (test)')
      if v.video_id not in missed and expressions[v.video_id]:
        splits[_SUBSETS[v.subset]].append(v)
    if not any(splits.values()):
      raise ValueError(f'No video of {release / "videoset.csv"} has sentences in '
                       f'{text / "a2d_annotation.txt"} (missed videos excluded)')
    # TFDS cannot write an empty split: a videoset with only train videos builds only train.
    return {name: self._generate_examples(split_videos, expressions, release, masks)
            for name, split_videos in splits.items() if split_videos}

  def _generate_examples(self, videos, expressions, release, masks):
    """Yields each video's records; a video whose files are absent or broken is skipped
    and counted (see cmsa_jax/records/broken.py)."""

    def make(v):
      folder = release / 'frames' / v.video_id
      source = folder if folder.is_dir() else release / 'clips320H' / f'{v.video_id}.mp4'
      for path in (source, masks / v.video_id):
        if not path.exists():
          raise FileNotFoundError(f'{path} not found (frames: {release}/frames/<id>/ or '
                                  f'{release}/clips320H/<id>.mp4; masks: {masks}/<id>/)')
      return list(self._video_examples(v, expressions[v.video_id], source, masks / v.video_id))

    yield from broken.examples(((v.video_id, v) for v in videos), make, 'video')

  def _video_examples(self, v, expressions, source, mask_dir):
    """Records of one video: its h5 frames are read first, then its clip frames decoded once."""
    annotated = {}
    for path in sorted(mask_dir.iterdir()):
      if re.fullmatch(r'\d+\.h5', path.name):
        annotated[int(path.stem)] = (path, video.read_a2d_frame(path))
    referred = {frame_id: [e for e in expressions if e.instance_id in frame.instance_ids]
                for frame_id, (_, frame) in annotated.items()}
    centers = [frame_id for frame_id, found in referred.items() if found]
    if not centers:
      return
    radius = self.builder_config.clip_radius
    jpegs, num_frames = frames.load_clip_frames(source, centers, radius)
    for frame_id in sorted(centers):
      path, frame = annotated[frame_id]
      clip = clips.clip_fields(jpegs, frame_id, radius, num_frames,
                               masks=frame.masks, masks_path=path)
      labels = frame.labels or [v.label] * len(frame.instance_ids)
      objects = [{'mask': image_io.encode_png(mask), 'id': instance,
                  'category': video.a2d_label_name(label)}
                 for mask, instance, label in zip(frame.masks, frame.instance_ids, labels)]
      for e in referred[frame_id]:
        yield f'{v.video_id}_{frame_id:05d}_{e.id}', dict(
            clip, objects=objects, video_id=v.video_id,
            sentences=[{'text': e.text, 'tokens': '', 'id': e.id,
                        'object_index': frame.instance_ids.index(e.instance_id)}])
