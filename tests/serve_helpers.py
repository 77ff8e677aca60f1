"""Tiny checkpoints and an in-process server for the --mode=serve tests."""

import contextlib
import io
import threading
import time

import av
import numpy as np
from PIL import Image

import helpers
from cmsa_jax.run import checkpoints
from cmsa_jax.run import serve
from cmsa_jax.run import state as state_lib

# Small enough that the tests can go over every limit with small files.
LIMITS = serve.Limits(max_upload_mb=0.5, max_pixels=300 * 300, max_frames=12, max_queue=4)


def write_checkpoint(config, workdir):
  """An (untrained) checkpoint of `config` in `workdir`, as training writes it."""
  vocab = helpers.vocabulary(config, workdir)
  _, state, _ = state_lib.create_train_state(config, len(vocab))
  with checkpoints.checkpoint_manager(config, workdir) as mngr:
    mngr.save(1, args=checkpoints.checkpoint_items(state, config, vocab), force=True)
  return workdir


def tiny_video_config():
  """configs/demo_video.py's model and data at the tests' tiny size."""
  config = helpers.make_tiny_config()
  config.update(dataset='synthetic_video/64px', model_name='cmsa_video', clip_radius=1,
                image_size=32)
  config.synthetic.update(image_size=64, num_train=16, num_eval=4)
  config.model.update(cfsa=True, cfsa_impl='dense', frame_weight='temperature')
  return config


@contextlib.contextmanager
def running(workdir, limits=LIMITS):
  """(url, segmenter) of a server on a free loopback port, in a thread of this process."""
  segmenter = serve.Segmenter(None, workdir, limits=limits)
  segmenter.warm_up()
  server = serve.make_server(segmenter, '127.0.0.1', 0)
  thread = threading.Thread(target=server.run, daemon=True)
  thread.start()
  deadline = time.monotonic() + 60
  while not server.started:
    assert thread.is_alive() and time.monotonic() < deadline, 'the server did not start'
    time.sleep(0.05)
  try:
    yield serve.bound_url(server), segmenter
  finally:
    server.should_exit = True
    thread.join(30)
    segmenter.close()


def scene(height=30, width=40, seed=0):
  """An RGB picture with a bright square, not square itself."""
  rng = np.random.default_rng(seed)
  rgb = rng.integers(0, 80, (height, width, 3), np.uint8)
  rgb[height // 4:height // 2, width // 4:width // 2] = (230, 40, 40)
  return rgb


def encode(rgb, fmt='PNG'):
  buffer = io.BytesIO()
  Image.fromarray(rgb).save(buffer, format=fmt)
  return buffer.getvalue()


def mp4(num_frames, size=(32, 48)):
  """H.264 MP4 bytes of `num_frames` frames with a square moving right."""
  buffer = io.BytesIO()
  with av.open(buffer, 'w', format='mp4') as container:
    stream = container.add_stream('libx264', rate=8)
    stream.height, stream.width, stream.pix_fmt = size[0], size[1], 'yuv420p'
    for i in range(num_frames):
      frame = np.full(size + (3,), 30, np.uint8)
      frame[8:20, 4 + 3 * i:16 + 3 * i] = (40, 200, 60)
      container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format='rgb24')))
    container.mux(stream.encode())
  return buffer.getvalue()


def rss_mb(pid='self'):
  """Resident memory of a process, MB (Linux)."""
  with open(f'/proc/{pid}/status') as f:
    for line in f:
      if line.startswith('VmRSS:'):
        return int(line.split()[1]) / 1024
  raise RuntimeError('no VmRSS')
