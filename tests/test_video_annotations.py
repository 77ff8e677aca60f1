"""A2D / JHMDB Sentences readers, on the published annotation files and on edge cases.

The expected numbers below were established with shell tools on the published
files (wc, cut, sort -u, grep), not with these readers.
"""

import collections
import pathlib

import av
import numpy as np
import pytest
from PIL import Image

from cmsa_jax.media import clips
from cmsa_jax.media import frames
from cmsa_jax.media import image_io
from cmsa_jax.records import video

REAL = pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'real-annotations'
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason=f'{REAL} is absent')


@needs_real
def test_real_a2d_annotations_parse_completely():
  expressions = video.read_a2d_annotations(REAL / 'a2d_annotation.txt')
  # 6655 data rows; only line 3181 (data row 3179), 'T6bNPuKV-wY,1 (copy),...', is dropped.
  assert len(expressions) == 6654
  assert sorted(set(range(6655)) - {e.id for e in expressions}) == [3179]
  assert len({e.video_id for e in expressions}) == 3754
  assert sum(e.instance_id == 0 for e in expressions) == 3754  # every video has instance 0
  assert max(e.instance_id for e in expressions) == 15
  by_id = {e.id: e for e in expressions}
  assert by_id[0] == video.Expression(0, '--h5fAKYurM', 0, 'the pigeon is limping')
  # 26 queries start and 196 end with a space in the file; the reader strips them.
  assert by_id[4443] == video.Expression(4443, 'e7Kjy13woXg', 1,
                                         'man in red tshirt is standing on the back')
  assert all(e.text == e.text.strip() and e.text for e in expressions)
  t6 = sorted(e.instance_id for e in expressions if e.video_id == 'T6bNPuKV-wY')
  assert t6 == [0, 1, 2, 3]


@needs_real
def test_real_a2d_missed_videos_complete_the_3782_videos():
  missed = video.read_lines(REAL / 'a2d_missed_videos.txt')  # 28 ids, no final newline
  annotated = {e.video_id for e in video.read_a2d_annotations(REAL / 'a2d_annotation.txt')}
  assert len(missed) == len(set(missed)) == 28
  assert not annotated & set(missed)
  assert len(annotated) + len(missed) == 3782  # A2D's video count


@needs_real
def test_real_jhmdb_annotations_parse_completely():
  expressions = video.read_jhmdb_annotations(REAL / 'jhmdb_annotation.txt')
  assert len(expressions) == 928
  assert [e.id for e in expressions] == list(range(928))
  assert len({e.video_id for e in expressions}) == 928
  assert expressions[0] == video.Expression(
      0, '100_pullups_pullup_f_nm_np1_fr_med_1', 0, 'man in black pulling up')
  assert all(e.text == e.text.strip() and e.text for e in expressions)
  assert collections.Counter(e.video_id.rsplit('_', 1)[1].isdigit() for e in expressions) == {
      True: 928}


def test_csv_quirks(tmp_path):
  path = tmp_path / 'a2d_annotation.txt'
  path.write_bytes('\ufeffvideo_id,instance_id,query\r\nv1,0,a man, in red\r\n\r\n'
                   'v1,1,"a dog, quoted"\r\nv2,x,bad id\r\n'.encode())
  # Blank lines are not data rows (as in pandas.read_csv), so ids match pandas' index.
  assert video.read_a2d_annotations(path) == [
      video.Expression(0, 'v1', 0, 'a man, in red'), video.Expression(1, 'v1', 1, 'a dog, quoted')]
  path.write_text('video_id,query\nv1\n')
  with pytest.raises(ValueError, match='data row 0 has 1 fields'):
    video.read_jhmdb_annotations(path)


def test_videoset_rows(tmp_path):
  path = tmp_path / 'videoset.csv'
  path.write_text('-0cOo0cRVZU,11,-1,-1,320,568,150,5,0\n\nzzM5lnGYuHY,55.0,1,2,320,480,97,3,1\n')
  assert video.read_a2d_videoset(path) == [video.A2DVideo('-0cOo0cRVZU', 11, 0),
                                           video.A2DVideo('zzM5lnGYuHY', 55, 1)]
  path.write_text('-0cOo0cRVZU,11,-1,-1,320,568,150,5\n')
  with pytest.raises(ValueError, match='videoset.csv:1: expected 9 fields'):
    video.read_a2d_videoset(path)


def test_a2d_label_names():
  assert video.a2d_label_name(11) == 'adult-climbing'
  assert video.a2d_label_name(44.0) == 'bird-flying'
  assert video.a2d_label_name(79) == 'dog-none'
  assert video.a2d_label_name(0) == '0'


def test_clip_frame_ids_pad_with_edge_frames():
  assert clips.clip_frame_ids(1, 2, 10) == [1, 1, 1, 2, 3]
  assert clips.clip_frame_ids(5, 2, 10) == [3, 4, 5, 6, 7]
  assert clips.clip_frame_ids(2, 3, 3) == [1, 1, 1, 2, 3, 3, 3]
  assert clips.clip_frame_ids(4, 0, 4) == [4]
  with pytest.raises(ValueError, match='center=5'):
    clips.clip_frame_ids(5, 1, 4)


def test_uniform_frame_ids_are_first_middle_last():
  assert video.uniform_frame_ids(5, 3) == [1, 3, 5]
  assert video.uniform_frame_ids(40, 3) == [1, 20, 40]
  assert video.uniform_frame_ids(2, 3) == [1, 2]
  assert video.uniform_frame_ids(1, 3) == [1]


def _write_frames(folder, ids):
  folder.mkdir()
  for i in ids:
    Image.fromarray(np.full((4, 6, 3), i, np.uint8)).save(folder / f'{i:05d}.png')


def test_numbered_frames_ignore_other_files_and_need_no_gaps(tmp_path):
  _write_frames(tmp_path / 'ok', [1, 2, 3])
  (tmp_path / 'ok' / '.AppleDouble').mkdir()
  (tmp_path / 'ok' / 'notes.txt').write_text('x')
  assert [p.name for p in frames.numbered_frames(tmp_path / 'ok')] == [
      '00001.png', '00002.png', '00003.png']
  _write_frames(tmp_path / 'gap', [1, 3])
  with pytest.raises(ValueError, match='numbered 1..n'):
    frames.numbered_frames(tmp_path / 'gap')


def _write_mp4(path, num_frames):
  with av.open(str(path), 'w') as container:
    stream = container.add_stream('libx264', rate=24)
    stream.height, stream.width, stream.pix_fmt = 16, 16, 'yuv420p'
    for i in range(num_frames):
      frame = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 20 * i, np.uint8), format='rgb24')
      container.mux(stream.encode(frame))
    container.mux(stream.encode())


@pytest.mark.parametrize('kind', ['folder', 'mp4'])
def test_load_clip_frames_reads_only_clip_frames_and_checks_centers(tmp_path, kind):
  if kind == 'folder':
    _write_frames(tmp_path / 'v', range(1, 9))
    source = tmp_path / 'v'
  else:
    source = tmp_path / 'v.mp4'
    _write_mp4(source, 8)
  jpegs, num_frames = frames.load_clip_frames(source, [1, 8], 1)
  assert num_frames == 8 and sorted(jpegs) == [1, 2, 7, 8]  # Clips [1, 1, 2] and [7, 8, 8].
  for bad in ([9], [0]):
    with pytest.raises(ValueError, match='outside its 8 frames'):
      frames.load_clip_frames(source, bad, 1)


def test_index_videos_skips_hidden_folders_and_rejects_duplicates(tmp_path):
  for folder in ('clap/v1', 'clap/.AppleDouble', 'run/v2', '.AppleDouble/v3'):
    (tmp_path / folder).mkdir(parents=True)
  assert video.index_videos(tmp_path, ['v1', 'v2', 'v3', 'v4']) == {'v1': 'clap', 'v2': 'run'}
  (tmp_path / 'run' / 'v1').mkdir()
  with pytest.raises(ValueError, match='v1 is under both clap and run'):
    video.index_videos(tmp_path, ['v1'])


def test_clip_fields_hold_the_clip_and_check_the_mask_size():
  jpegs = {i: image_io.encode_jpeg(np.full((4, 6, 3), 40 * i, np.uint8)) for i in (1, 2, 3)}
  clip = clips.clip_fields(jpegs, 3, 1, 3, masks=np.zeros((2, 4, 6)), masks_path='m.h5')
  assert clip == {'image': jpegs[3], 'height': 4, 'width': 6, 'frame_index': 3,
                  'frames': [jpegs[2], jpegs[3], jpegs[3]], 'frame_ids': [2, 3, 3]}
  with pytest.raises(ValueError, match=r'm.h5: masks are \(6, 4\)'):
    clips.clip_fields(jpegs, 3, 1, 3, masks=np.zeros((6, 4)), masks_path='m.h5')


def test_clip_mask_marks_the_edge_padding_of_clip_frame_ids():
  # Clip [1, 1, 1, 2, 3] of a video's first frame: the two leading 1s repeat frame 1.
  np.testing.assert_array_equal(clips.clip_mask(clips.clip_frame_ids(1, 2, 10)),
                                [False, False, True, True, True])
  np.testing.assert_array_equal(clips.clip_mask(clips.clip_frame_ids(2, 3, 3)),
                                [False, False, True, True, True, False, False])
  assert clips.clip_mask(clips.clip_frame_ids(5, 2, 10)).all()
