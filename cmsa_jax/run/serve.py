"""A local web app on a trained workdir: upload an image (or a video, for a video
model), type an expression, get the mask and what the model attended to -- the
word attention of each level (Eq.4), the pixel heatmap, and for video the frame
attention (Eq.9-11). The model and its checkpoint config are loaded once and
compiled for the model's fixed input size at start-up.

  python main.py --mode=serve --workdir=runs/demo            # http://127.0.0.1:8000

HTTP API (what the page, the tests and benchmarks/serve.py use; `Client` wraps it):

  GET  /api/info                      the model, the limits, the examples
  GET  /api/example/<i>               example i: PNG (image model) or MP4 (video model)
  POST /api/image?expression=TEXT     body: the bytes of an image file      -> JSON
  POST /api/video?expression=TEXT[&frame=K]   body: the bytes of a video file -> JSON

A result holds base64 PNG/GIF/ZIP files and `notes` (words the vocabulary does
not know, words past the model's max_words, ...). A refused request is JSON
{"error": message}: 400 bad input, 413 over a size limit, 503 queue full.

Safety: the uploaded bytes are all the server takes from a client (no path is
ever opened on its behalf); images are decoded by media/image_io and videos by
media/frames (predict's readers) after the size and pixel limits are checked;
a video is written to a private temporary folder for the decoder and removed
after the request, the folder at exit.
"""

import asyncio
import base64
import ctypes
import ctypes.util
import dataclasses
import io
import json
import os
import shutil
import signal
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile

from absl import logging
import av
import matplotlib
import numpy as np
from PIL import Image

from cmsa_jax import errors
from cmsa_jax.data import text
from cmsa_jax.media import frames as frames_lib
from cmsa_jax.media import image_io
from cmsa_jax.run import checkpoints
from cmsa_jax.run import dataset
from cmsa_jax.run import predict
from cmsa_jax.run import predict_video

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'serve_page.html')
NUM_EXAMPLES = 6
DISPLAY_SIDE = 640  # Longest side of the overlay/heatmap pictures sent back (masks: full size).
SMALL_SIDE = 32  # Images with a shorter side get a note: the model upsamples them.
_DRAIN_FACTOR = 4  # A too-large upload is read (and dropped) up to this many limits, then cut.


@dataclasses.dataclass(frozen=True)
class Limits:
  """What one request may hold; above a limit the request is refused with a message."""
  max_upload_mb: float = 20.0
  max_pixels: int = 16_000_000  # Per image or video frame (4000 x 4000; a 12 MP photo fits).
  max_frames: int = 300
  max_queue: int = 8  # Requests waiting or running; more are refused (503) until one ends.
  max_expression_chars: int = 10_000  # 500 words fit (the model reads the first max_words).

  @property
  def max_upload_bytes(self):
    return int(self.max_upload_mb * 2**20)


def _mb(n):
  return f'{n / 2**20:.1f} MB'


class RequestTooLarge(errors.InputError):
  """A request over one of the Limits' sizes (answered with HTTP 413)."""


def check_upload_size(size, name, limits):
  if size > limits.max_upload_bytes:
    raise RequestTooLarge(f'{name} is {_mb(size)}; the upload limit is '
                          f'{limits.max_upload_mb:g} MB (--max_upload_mb)')


def _check_pixels(height, width, name, limits, what='image'):
  if height * width > limits.max_pixels:
    raise RequestTooLarge(f'{name}: the {what} is {width} x {height} = {height * width:,} pixels; '
                          f'the limit is {limits.max_pixels:,} (--max_pixels). Downscale it.')


def _check_expression(expression, limits):
  if len(expression) > limits.max_expression_chars:
    raise errors.InputError(f'the expression has {len(expression)} characters; the limit is '
                            f'{limits.max_expression_chars}')


def _b64(data):
  return base64.b64encode(data).decode('ascii')


def _png(array):
  return _b64(image_io.encode_png(array))


def _display(array):
  """`array` (H, W, ...) shrunk (every k-th pixel) so its longest side is at most DISPLAY_SIDE."""
  stride = max(1, -(-max(array.shape[:2]) // DISPLAY_SIDE))
  return np.ascontiguousarray(array[::stride, ::stride])


def _picture(rgb):
  """A data URL of a picture for the page: lossless PNG when small, JPEG (smaller, faster
  to encode) for photo-sized ones."""
  if rgb.shape[0] * rgb.shape[1] <= 200_000:
    return 'data:image/png;base64,' + _png(rgb)
  return 'data:image/jpeg;base64,' + _b64(image_io.encode_jpeg(rgb))


def heatmap_picture(image, heatmap, alpha=0.5):
  """`heatmap` (H, W) in [0, 1] as a jet overlay on `image` (predict's heatmap.png
  without the figure): uint8 (H, W, 3)."""
  low, high = float(heatmap.min()), float(heatmap.max())  # Scaled as imshow does.
  scaled = (heatmap - low) / (high - low) if high > low else np.zeros_like(heatmap)
  colours = matplotlib.colormaps['jet'](scaled)[..., :3] * 255
  return ((1 - alpha) * image + alpha * colours).astype(np.uint8)


def _word_notes(expression, words, vocab, max_words):
  notes = []
  unknown = list(dict.fromkeys(w for w in words if w not in vocab))
  if unknown:
    notes.append('Words the vocabulary does not know (read as <unk>): ' + ', '.join(unknown))
  dropped = text.tokenize(expression)[max_words:]
  if dropped:
    shown = ' '.join(dropped[:20]) + (' ...' if len(dropped) > 20 else '')
    notes.append(f'The model reads the first {max_words} words; {len(dropped)} more were '
                 f'ignored: {shown}')
  return notes, unknown


class Segmenter:
  """The model of a checkpoint, loaded once, answering image or video requests.

  Not thread-safe: the app runs one request at a time (JAX uses every core for it).
  """

  def __init__(self, config, workdir, *, step=None, limits=Limits()):
    self.model, self.saved, self.vocab, self.step = checkpoints.restore_model(workdir, step)
    self.kind = 'video' if 'frames' in self.model.input_keys else 'image'
    if self.kind == 'video':
      predict_video.check_video_model(self.model, self.saved, workdir)
    self.use_crf = bool(config.crf if config is not None else self.saved.crf)
    self.limits = limits
    self.workdir = workdir
    self.tmpdir = tempfile.mkdtemp(prefix='cmsa_serve_')

  def close(self):
    shutil.rmtree(self.tmpdir, ignore_errors=True)

  # Requests.

  def image(self, data, expression, name='image'):
    """The JSON-ready result of `expression` on the image file bytes `data`."""
    if self.kind != 'image':
      raise errors.InputError('this checkpoint is a video model: send a video (/api/video)')
    _check_expression(expression, self.limits)
    check_upload_size(len(data), name, self.limits)
    try:
      height, width = image_io.size(data)  # Header only: nothing decoded yet.
    except (OSError, ValueError, Image.DecompressionBombError):
      height = width = 0  # open_image below names the problem.
    _check_pixels(height, width, name, self.limits)
    image = image_io.to_rgb(image_io.open_image(data, name), name)
    start = time.perf_counter()
    mask, heatmap, weights, words = predict.segment(
        self.model, self.vocab, image, expression, image_size=self.saved.image_size,
        max_words=self.saved.max_words, use_crf=self.use_crf)
    notes, unknown = _word_notes(expression, words, self.vocab, self.saved.max_words)
    if min(image.shape[:2]) < SMALL_SIDE:
      notes.append(f'The image is only {image.shape[1]} x {image.shape[0]} pixels; the model '
                   f'sees it upsampled to {self.saved.image_size} px, so the mask means little.')
    return {
        'kind': 'image', 'width': image.shape[1], 'height': image.shape[0],
        'coverage': float(mask.mean()), 'crf': self.use_crf,
        'mask_png': _png(mask.astype(np.uint8) * 255),
        'overlay': _picture(_display(predict.overlay(image, mask))),
        'heatmap': _picture(heatmap_picture(_display(image), _display(heatmap))),
        'words': words, 'unknown_words': unknown, 'levels': list(self.model.levels),
        'word_attention': np.asarray(weights, np.float64).round(4).tolist(),
        'notes': notes, 'model_seconds': round(time.perf_counter() - start, 4),
    }

  def video(self, data, expression, frame=None, name='video'):
    """The JSON-ready result of `expression` on the video file bytes `data`."""
    if self.kind != 'video':
      raise errors.InputError('this checkpoint is an image model: send an image (/api/image)')
    _check_expression(expression, self.limits)
    check_upload_size(len(data), name, self.limits)
    self.vocab.encode(expression, self.saved.max_words, strict=True)  # Before decoding.
    folder = tempfile.mkdtemp(dir=self.tmpdir)
    try:
      path = os.path.join(folder, 'upload')
      with open(path, 'wb') as f:
        f.write(data)
      self._probe_video(path, name)
      try:
        frames = frames_lib.read_frames(path)
      except ValueError as e:
        raise errors.InputError(str(e).replace(path, name)) from None
    finally:
      shutil.rmtree(folder, ignore_errors=True)
    if frame is not None and not 1 <= frame <= len(frames):
      raise errors.InputError(f'frame={frame}: the video has frames 1..{len(frames)}')
    start = time.perf_counter()
    masks, weights, attention, clips = predict_video.segment(
        self.model, self.vocab, frames, expression, image_size=self.saved.image_size,
        max_words=self.saved.max_words, clip_radius=self.saved.clip_radius)
    c = len(frames) // 2 if frame is None else frame - 1
    words = text.tokenize(expression)[:self.saved.max_words]
    notes, unknown = _word_notes(expression, words, self.vocab, self.saved.max_words)
    if len(frames) == 1:
      notes.append('The video has 1 frame: every clip repeats it, so the frame attention has '
                   'no other frame to look at (the result is the image model on that frame).')
    gif, masks_zip, plot = io.BytesIO(), io.BytesIO(), io.BytesIO()
    predict_video.save_gif(gif, [_display(f) for f in frames], [_display(m) for m in masks])
    with zipfile.ZipFile(masks_zip, 'w', zipfile.ZIP_DEFLATED) as z:
      for i, mask in enumerate(masks):
        z.writestr(f'masks/{i + 1:05d}.png', image_io.encode_png(mask.astype(np.uint8) * 255))
    predict_video.plot_frame_attention(plot, [_display(f) for f in frames], clips[c], weights[c],
                                       attention[c], self.model.levels, c, expression)
    return {
        'kind': 'video', 'num_frames': len(frames), 'width': frames[0].shape[1],
        'height': frames[0].shape[0], 'frame': c + 1,
        'coverage': [float(m.mean()) for m in masks],
        'overlay_gif': _b64(gif.getvalue()), 'masks_zip': _b64(masks_zip.getvalue()),
        'frame_attention_png': _b64(plot.getvalue()),
        'words': words, 'unknown_words': unknown, 'notes': notes,
        'model_seconds': round(time.perf_counter() - start, 4),
    }

  def _probe_video(self, path, name):
    """Refuses a video over the frame or pixel limits from its headers and packets,
    before any frame is decoded; anything unreadable is left to read_frames to name."""
    try:
      with av.open(path) as container:
        stream = container.streams.video[0]
        height, width = stream.codec_context.height, stream.codec_context.width
        count = sum(1 for packet in container.demux(stream) if packet.size)
    except (av.error.FFmpegError, IndexError, ValueError):
      return
    _check_pixels(height, width, name, self.limits, what='video frame')
    if count > self.limits.max_frames:
      raise RequestTooLarge(f'{name}: the video has {count} frames; the limit is '
                            f'{self.limits.max_frames} (--max_frames). Cut it shorter.')

  # Start-up.

  def warm_up(self):
    """Compiles the model for its input size (one request on a blank input)."""
    start = time.perf_counter()
    word = self.vocab.words[2]  # The first word after <pad> and <unk>.
    blank = image_io.encode_png(np.zeros((self.saved.image_size,) * 2 + (3,), np.uint8))
    if self.kind == 'image':
      self.image(blank, word)
    else:
      self.video(frames_lib.encode_video([np.zeros((64, 64, 3), np.uint8)] * 2), word)
    logging.info('Compiled and warmed up in %.1f s.', time.perf_counter() - start)

  def examples(self):
    """Up to NUM_EXAMPLES held-out records of the checkpoint's dataset: [(file bytes,
    thumbnail PNG bytes, expressions)]; none when the dataset is not available here."""
    try:
      source = dataset.load_source(self.saved, self.saved.eval_split)
    except errors.UserError as e:
      logging.info('No examples in the page: %s', e)
      return []
    out = []
    for i in range(min(NUM_EXAMPLES, len(source))):
      record = source[i]
      expressions = [t.decode() if isinstance(t, bytes) else str(t)
                     for t in record['sentences']['text']]
      thumbnail = image_io.encode_png(np.asarray(record['image']))
      data = (frames_lib.encode_video([np.asarray(f) for f in record['frames']])
              if self.kind == 'video' else thumbnail)
      out.append((data, thumbnail, expressions))
    return out

  def info(self):
    return {'kind': self.kind, 'step': self.step, 'workdir': os.path.basename(
                os.path.abspath(self.workdir)), 'model_name': self.saved.model_name,
            'dataset': self.saved.dataset, 'image_size': self.saved.image_size,
            'max_words': self.saved.max_words, 'vocabulary_size': len(self.vocab),
            'crf': self.use_crf, 'limits': dataclasses.asdict(self.limits)}


# The web app.

def release_memory():
  """Returns the C heap's free pages to the system (glibc's malloc_trim; elsewhere a no-op).

  After a burst of concurrent requests glibc keeps each thread's freed arena: RSS stays
  ~90 MB above idle (demo model, 20 requests of 640x480 photos) until trimmed.
  """
  try:
    ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6').malloc_trim(0)
  except (OSError, AttributeError):
    pass


def make_app(segmenter):
  """The Starlette app around `segmenter`: one request runs at a time, at most
  `limits.max_queue` wait or run; more are refused at once (503)."""
  from starlette.applications import Starlette  # pylint: disable=g-import-not-at-top
  from starlette.responses import HTMLResponse, JSONResponse, Response  # pylint: disable=g-import-not-at-top
  from starlette.routing import Route  # pylint: disable=g-import-not-at-top

  limits = segmenter.limits
  examples = segmenter.examples()
  info = dict(segmenter.info(), examples=[
      {'index': i, 'thumbnail_png': _b64(thumb), 'expressions': texts}
      for i, (_, thumb, texts) in enumerate(examples)])
  with open(PAGE, encoding='utf-8') as f:
    page = f.read()
  work = threading.Lock()  # The model runs one request at a time.
  pending = [0]  # Requests admitted and not yet answered (the event loop's thread only).

  def error(message, status):
    return JSONResponse({'error': message}, status_code=status)

  async def read_body(request, name):
    declared = request.headers.get('content-length', '')
    if declared.isdigit() and int(declared) > _DRAIN_FACTOR * limits.max_upload_bytes:
      check_upload_size(int(declared), name, limits)  # Refused unread: the client may miss it.
    chunks, size = [], 0
    async for chunk in request.stream():
      size += len(chunk)
      if size > limits.max_upload_bytes:
        chunks = None  # Keep reading (and dropping) so the client gets the message.
        if size > _DRAIN_FACTOR * limits.max_upload_bytes:
          break
      elif chunks is not None:
        chunks.append(chunk)
    check_upload_size(size, name, limits)
    return b''.join(chunks)

  def run_locked(fn, *args):
    with work:
      return fn(*args)

  async def handle(request, fn, *args):
    name = request.query_params.get('name', 'the upload')[:100]  # A label only.
    start = time.perf_counter()
    try:  # The body is read first: a client refused mid-upload would not see the message.
      data = await read_body(request, name)
    except RequestTooLarge as e:
      return error(str(e), 413)
    if pending[0] >= limits.max_queue:
      return error(f'the server is busy ({pending[0]} requests queued, the limit is '
                   f'{limits.max_queue}); try again in a moment', 503)
    pending[0] += 1
    try:
      result = await asyncio.to_thread(run_locked, fn, data, *args, name)
    except RequestTooLarge as e:
      return error(str(e), 413)
    except errors.UserError as e:
      return error(str(e), 400)
    except Exception:  # pylint: disable=broad-except  # A bug: logged, the server goes on.
      logging.exception('Request failed.')
      return error('internal error (the server log has the traceback)', 500)
    finally:
      pending[0] -= 1
      if not pending[0]:  # Idle for a second after a request: give its memory back.
        asyncio.get_running_loop().call_later(1, lambda: pending[0] or release_memory())
    result['seconds'] = round(time.perf_counter() - start, 4)
    return JSONResponse(result)

  def expression_of(request):
    if 'expression' not in request.query_params:
      raise errors.InputError('the request needs ?expression=...')
    return request.query_params['expression']

  async def image(request):
    try:
      expression = expression_of(request)
    except errors.InputError as e:
      return error(str(e), 400)
    return await handle(request, lambda data, name: segmenter.image(data, expression, name))

  async def video(request):
    try:
      expression = expression_of(request)
      frame = request.query_params.get('frame') or None
      if frame is not None:
        if not frame.isdigit():
          raise errors.InputError(f'frame={frame!r} must be a frame number (1, 2, ...)')
        frame = int(frame)
    except errors.InputError as e:
      return error(str(e), 400)
    return await handle(request,
                        lambda data, name: segmenter.video(data, expression, frame, name))

  async def homepage(request):
    del request
    return HTMLResponse(page, headers={'Cache-Control': 'no-store'})

  async def get_info(request):
    del request
    return JSONResponse(dict(info, pending=pending[0]))

  async def example(request):
    i = request.path_params['i']
    if not 0 <= i < len(examples):
      return error(f'no example {i}; there are {len(examples)}', 404)
    kind = 'video/mp4' if segmenter.kind == 'video' else 'image/png'
    return Response(examples[i][0], media_type=kind)

  return Starlette(routes=[
      Route('/', homepage), Route('/api/info', get_info),
      Route('/api/example/{i:int}', example),
      Route('/api/image', image, methods=['POST']), Route('/api/video', video, methods=['POST']),
  ])


def make_server(segmenter, host='127.0.0.1', port=8000):
  """The uvicorn server of `make_app(segmenter)`; `port=0` picks a free port (`bound_url`)."""
  import uvicorn  # pylint: disable=g-import-not-at-top
  return uvicorn.Server(uvicorn.Config(
      make_app(segmenter), host=host, port=port, log_config=None, access_log=False,
      timeout_graceful_shutdown=10, limit_concurrency=4 * segmenter.limits.max_queue + 16))


def bound_url(server):
  """The URL a started server listens on."""
  host, port = server.servers[0].sockets[0].getsockname()[:2]
  return f'http://{host}:{port}/'


def serve(config, workdir, *, step=None, host='127.0.0.1', port=8000, limits=Limits()):
  """Loads the checkpoint, compiles, serves until Ctrl-C or SIGTERM, then cleans up.

  `port=0` picks a free port; the log line "Serving ... at URL" names it.
  """
  segmenter = Segmenter(config, workdir, step=step, limits=limits)
  # uvicorn stops gracefully on SIGINT/SIGTERM, then re-raises the signal to the handler
  # it found: SIGTERM's is a no-op here and SIGINT's KeyboardInterrupt is caught below.
  previous = signal.signal(signal.SIGTERM, lambda *_: None)
  try:
    segmenter.warm_up()
    server = make_server(segmenter, host, port)
    release_memory()
    if host not in ('127.0.0.1', 'localhost', '::1'):
      logging.warning('Listening on %s: anyone who can reach this address can use the model '
                      'and upload files to it (there is no login, no TLS).', host)

    async def run():
      task = asyncio.create_task(server.serve())
      while not server.started and not task.done():
        await asyncio.sleep(0.05)
      if server.started:
        logging.info('Serving the %s model of checkpoint step %d at %s (Ctrl-C stops).',
                     segmenter.kind, segmenter.step, bound_url(server))
      await task

    try:
      asyncio.run(run())
    except KeyboardInterrupt:
      pass
    except SystemExit:  # uvicorn's exit when it cannot listen; it logged why.
      raise errors.ConfigError(f'could not listen on {host}:{port} (in use? try another '
                               '--port)') from None
  finally:
    signal.signal(signal.SIGTERM, previous)
    segmenter.close()
  logging.info('Stopped; removed %s.', segmenter.tmpdir)


class Client:
  """The HTTP API from Python (standard library only): what benchmarks/serve.py and
  the tests use.

    client = Client('http://127.0.0.1:8000/')
    result = client.image(open('photo.jpg', 'rb').read(), 'the man on the left')
    mask = Client.mask(result)   # (H, W) bool
  """

  def __init__(self, url, timeout=120):
    self.url = url.rstrip('/') + '/'
    self.timeout = timeout

  def _call(self, path, data=None, **params):
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    request = urllib.request.Request(self.url + path + ('?' + query if query else ''), data=data,
                                     method='POST' if data is not None else 'GET')
    try:
      with urllib.request.urlopen(request, timeout=self.timeout) as response:
        return response.status, response.read()
    except urllib.error.HTTPError as e:
      return e.code, e.read()

  def request(self, path, data=None, **params):
    """(HTTP status, JSON reply) of one API call."""
    status, body = self._call(path, data, **params)
    return status, json.loads(body)

  def info(self):
    return self.request('api/info')[1]

  def example(self, i):
    return self._call(f'api/example/{i}')[1]

  def image(self, data, expression, name=None):
    """The result of an image request; errors.InputError with the server's message if refused."""
    return self._ok(*self.request('api/image', data, expression=expression, name=name))

  def video(self, data, expression, frame=None, name=None):
    return self._ok(*self.request('api/video', data, expression=expression, frame=frame,
                                  name=name))

  @staticmethod
  def _ok(status, reply):
    if status != 200:
      raise errors.InputError(f'HTTP {status}: {reply.get("error")}')
    return reply

  @staticmethod
  def mask(result):
    """The (H, W) bool mask of an image result."""
    return _decode_png(result['mask_png']) > 0

  @staticmethod
  def masks(result):
    """The (n, H, W) bool masks of a video result."""
    with zipfile.ZipFile(io.BytesIO(base64.b64decode(result['masks_zip']))) as z:
      return np.stack([np.asarray(Image.open(io.BytesIO(z.read(n)))) > 0
                       for n in sorted(z.namelist())])


def _decode_png(b64):
  with Image.open(io.BytesIO(base64.b64decode(b64))) as picture:
    return np.asarray(picture)
