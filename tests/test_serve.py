"""--mode=serve through its HTTP API: the same masks as --mode=predict for the same
inputs (image and video), every bad input answered with a message while the server
goes on serving, 20 concurrent requests answered or refused, a clean exit on SIGTERM."""

import concurrent.futures
import gc
import logging
import os
from pathlib import Path
import re
import signal
import subprocess
import sys
import threading
import time

import jax
import numpy as np
from PIL import Image
import pytest

import helpers
import serve_helpers
from cmsa_jax.data import text
from cmsa_jax.run import predict
from cmsa_jax.run import predict_video
from cmsa_jax.run import serve

# One group with test_serve_browser.py: their servers (conftest.py) start once, on one worker.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group('serve')]
LIMITS = serve_helpers.LIMITS


@pytest.fixture
def image_app(serve_image_app):
  workdir, url, segmenter = serve_image_app
  return workdir, serve.Client(url), segmenter


@pytest.fixture
def video_app(serve_video_app):
  workdir, url, segmenter = serve_video_app
  return workdir, serve.Client(url), segmenter


def test_nothing_compiles_after_warm_up(image_app, video_app, caplog):
  """Start-up compiled the model for its input size: new image sizes, frame counts and
  expression lengths run without compiling."""
  _, _, images = image_app
  _, _, videos = video_app
  image_words, video_words = images.vocab.words[2:6], videos.vocab.words[2:6]
  with jax.log_compiles(True), caplog.at_level(logging.WARNING):
    for (height, width), n in (((50, 70), 1), ((280, 200), 3), ((1, 1), 4)):
      images.image(serve_helpers.encode(serve_helpers.scene(height, width)),
                   ' '.join(image_words[:n]))
    for frames, n in ((2, 1), (7, 4)):
      videos.video(serve_helpers.mp4(frames, (48, 64)), ' '.join(video_words[:n]))
  compiled = [r.getMessage()[:100] for r in caplog.records if 'Compiling' in r.getMessage()]
  assert not compiled, compiled


def _png_file(path):
  with Image.open(path) as picture:
    return np.asarray(picture)


def test_image_request_gives_predicts_mask(image_app, tmp_path):
  workdir, client, segmenter = image_app
  example = client.info()['examples'][0]
  expressions = example['expressions'] * 3
  cases = [('example.png', client.example(0), expressions[0]),
           ('scene.jpg', serve_helpers.encode(serve_helpers.scene(40, 60), 'JPEG'),
            expressions[1]),
           ('tall.png', serve_helpers.encode(serve_helpers.scene(70, 36, seed=1)),
            expressions[2])]
  coverages = []
  for name, data, expression in cases:
    (tmp_path / name).write_bytes(data)
    result = client.image(data, expression, name=name)
    expected = _png_file(predict.predict(None, workdir, str(tmp_path / name), expression,
                                         str(tmp_path / name[:-4]))['mask']) > 0
    height, width = Image.open(tmp_path / name).size[::-1]
    mask = serve.Client.mask(result)
    assert mask.shape == expected.shape == (height, width) == (result['height'], result['width'])
    np.testing.assert_array_equal(mask, expected)
    coverages.append(mask.mean())
    words = text.tokenize(expression)[:segmenter.saved.max_words]
    assert result['words'] == words
    assert np.asarray(result['word_attention']).shape == (len(result['levels']), len(words))
    assert result['overlay'].startswith('data:image/png;base64,')
    assert result['notes'] == []
  assert any(0 < c < 1 for c in coverages), coverages  # Not only empty or full masks.


def test_video_request_gives_predicts_masks(video_app, tmp_path):
  workdir, client, _ = video_app
  expression = client.info()['examples'][0]['expressions'][0]
  data = serve_helpers.mp4(5)
  (tmp_path / 'clip.mp4').write_bytes(data)
  result = client.video(data, expression, name='clip.mp4')
  out = predict_video.predict_video(None, workdir, str(tmp_path / 'clip.mp4'), expression,
                                    str(tmp_path / 'out'))
  expected = np.stack([_png_file(p) > 0 for p in sorted(Path(out['masks']).iterdir())])
  masks = serve.Client.masks(result)
  assert masks.shape == expected.shape == (5, 32, 48)
  np.testing.assert_array_equal(masks, expected)
  assert (result['num_frames'], result['frame']) == (5, 3)
  gif = Image.open(serve_helpers.io.BytesIO(serve.base64.b64decode(result['overlay_gif'])))
  assert (gif.n_frames, gif.size) == (5, (48, 32))
  assert result['frame_attention_png'] and result['notes'] == []


def test_every_bad_input_gets_a_message_and_the_server_goes_on(image_app, video_app):
  _, images, _ = image_app
  _, videos, _ = video_app
  good_image = serve_helpers.encode(serve_helpers.scene())
  image_words = images.info()['examples'][0]['expressions'][0]
  video_words = videos.info()['examples'][0]['expressions'][0]
  refused = [
      (images, 'api/image', b'%PDF-1.4 not an image', image_words, 400,
       'notes.pdf: not a readable image'),
      (images, 'api/image', serve_helpers.encode(serve_helpers.scene(), 'JPEG')[:300],
       image_words, 400, 'notes.pdf: not a readable image'),
      (images, 'api/image', serve_helpers.encode(np.zeros((301, 300, 3), np.uint8)),
       image_words, 413, r'300 x 301 = 90,300 pixels; the limit is 90,000 \(--max_pixels\)'),
      (images, 'api/image', os.urandom(600_000), image_words, 413,
       r'notes.pdf is 0.6 MB; the upload limit is 0.5 MB \(--max_upload_mb\)'),
      (images, 'api/image', good_image, '', 400, "expression '' is empty"),
      (images, 'api/image', good_image, ' \t ', 400, r"expression ' \\t ' is empty"),
      (images, 'api/image', good_image, 'zebra giraffe', 400, 'has no word in the vocabulary'),
      (images, 'api/image', good_image, 'x' * 10_001, 400, '10001 characters; the limit is'),
      (images, 'api/video', serve_helpers.mp4(3), image_words, 400, 'an image model'),
      (videos, 'api/video', b'not a video at all', video_words, 400,
       'notes.pdf: not a readable video'),
      (videos, 'api/video', serve_helpers.mp4(LIMITS.max_frames + 1), video_words, 413,
       f'has {LIMITS.max_frames + 1} frames; the limit is {LIMITS.max_frames}'),
      (videos, 'api/video?frame=9', serve_helpers.mp4(3), video_words, 400,
       r'frame=9: the video has frames 1..3'),
      (videos, 'api/video?frame=x', serve_helpers.mp4(3), video_words, 400,
       "frame='x' must be a frame number"),
      (videos, 'api/image', good_image, video_words, 400, 'a video model'),
  ]
  for client, path, data, expression, status, message in refused:
    path, _, frame = path.partition('?frame=')
    code, reply = client.request(path, data, expression=expression, name='notes.pdf',
                                 frame=frame or None)
    assert code == status, (path, message, reply)
    assert re.search(message, reply['error']), (message, reply)
  # Answered, with a note saying what was done.
  result = images.image(serve_helpers.encode(np.full((1, 1, 3), 200, np.uint8)), image_words)
  assert serve.Client.mask(result).shape == (1, 1)
  assert any('only 1 x 1 pixels' in n for n in result['notes'])
  result = images.image(good_image, ' '.join([image_words] + ['circle'] * 500))
  max_words = images.info()['max_words']
  ignored = len(text.tokenize(image_words)) + 500 - max_words
  assert any(f'reads the first {max_words} words; {ignored} more were ignored' in n
             for n in result['notes'])
  result = videos.video(serve_helpers.mp4(1), video_words)
  assert serve.Client.masks(result).shape == (1, 32, 48)
  assert any('has 1 frame' in n for n in result['notes'])
  # Still serving.
  assert serve.Client.mask(images.image(good_image, image_words)).shape == (30, 40)
  assert serve.Client.masks(videos.video(serve_helpers.mp4(4), video_words)).shape[0] == 4


def test_20_concurrent_requests_are_answered_or_refused(image_app):
  _, client, segmenter = image_app
  data = serve_helpers.encode(serve_helpers.scene(280, 300))
  words = client.info()['examples'][0]['expressions'][0]
  assert client.request('api/image', data, expression=words)[0] == 200
  time.sleep(1.5)  # The app gives freed memory back 1 s after its last request.
  gc.collect()
  idle = serve_helpers.rss_mb()
  run = segmenter.image

  def slow(*args):  # Each request holds the model 0.3 s, so the 20 overlap.
    time.sleep(0.3)
    return run(*args)

  segmenter.image = slow
  start = threading.Barrier(20)

  def one(_):
    start.wait()
    return client.request('api/image', data, expression=words)

  try:
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
      replies = list(pool.map(one, range(20)))
  finally:
    segmenter.image = run
  codes = [code for code, _ in replies]
  assert set(codes) <= {200, 503}, codes
  assert codes.count(200) >= LIMITS.max_queue and codes.count(503) >= 1, codes
  for code, reply in replies:
    if code == 503:
      assert re.search(r'busy .* the limit is 4\); try again', reply['error'])
    else:
      assert serve.Client.mask(reply).shape == (280, 300)
  assert client.request('api/image', data, expression=words)[0] == 200
  del replies
  time.sleep(1.5)
  gc.collect()
  after = serve_helpers.rss_mb()
  # Without serve.release_memory: +60-90 MB (glibc keeps each thread's freed arena).
  assert after - idle < 30, (idle, after)


def test_main_serves_and_exits_cleanly_on_sigterm(image_app, tmp_path):
  workdir, _, _ = image_app
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(helpers.REPO)] + [
      p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]))
  process = subprocess.Popen(
      [sys.executable, str(helpers.REPO / 'main.py'), '--mode=serve', f'--workdir={workdir}',
       '--port=0', '--max_upload_mb=1'], cwd=tmp_path, env=env, stderr=subprocess.PIPE,
      text=True)
  lines = []
  try:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
      line = process.stderr.readline()
      lines.append(line)
      if not line or 'Serving the image model' in line:
        break
    url = re.search(r'at (http://127\.0\.0\.1:\d+/)', lines[-1])
    assert url, ''.join(lines[-20:])
    client = serve.Client(url.group(1))
    assert client.info()['limits']['max_upload_mb'] == 1
    words = client.info()['examples'][0]['expressions'][0]
    assert client.image(serve_helpers.encode(serve_helpers.scene()), words)['width'] == 40
    process.send_signal(signal.SIGTERM)
    rest = process.communicate(timeout=60)[1]
  finally:
    process.kill()
  assert process.returncode == 0, rest[-3000:]
  tmpdir = re.search(r'Stopped; removed (\S+)\.', rest)
  assert tmpdir and not os.path.exists(tmpdir.group(1)), rest[-3000:]
