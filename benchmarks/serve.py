"""Latency, throughput and memory of `python main.py --mode=serve` through its HTTP API.

  python benchmarks/serve.py --workdir=runs/demo --json
  python benchmarks/serve.py --url=http://127.0.0.1:8000/ --num_requests=100

Starts the server on --workdir (a subprocess on a free loopback port, unless --url
names a running one), then for each input (`example`: the held-out scenes of the
checkpoint's dataset at their own size; `photo`: the same scenes as 640x480 JPEGs)
sends --num_requests sequential requests, then --concurrent requests at once, and
prints p50/p95 latency and requests/s; refused requests (queue full, HTTP 503) are
counted apart. With its own server it also reports the server's resident memory:
idle after start-up, peak during the concurrent burst, and 3 s after it.
"""

import concurrent.futures
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

from absl import app
from absl import flags
import numpy as np
from PIL import Image

from cmsa_jax.run import serve

_WORKDIR = flags.DEFINE_string('workdir', 'runs/demo', 'Trained workdir to serve.')
_URL = flags.DEFINE_string('url', None, 'A running server to measure instead.')
_INPUTS = flags.DEFINE_list('inputs', ['example', 'photo'], 'Inputs to time: example, photo.')
_NUM = flags.DEFINE_integer('num_requests', 50, 'Sequential requests per input.')
_CONCURRENT = flags.DEFINE_integer('concurrent', 20, 'Requests sent at once per input.')
_MAX_QUEUE = flags.DEFINE_integer('max_queue', 8, 'The started server\'s --max_queue.')
_JSON = flags.DEFINE_bool('json', False, 'Print the results as JSON on the last line.')


def rss_mb(pid):
  with open(f'/proc/{pid}/status') as f:
    return next(int(line.split()[1]) / 1024 for line in f if line.startswith('VmRSS:'))


def start_server(workdir, max_queue):
  """(process, url) of main.py --mode=serve on a free port, once it serves."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  process = subprocess.Popen(
      [sys.executable, os.path.join(root, 'main.py'), '--mode=serve', f'--workdir={workdir}',
       '--port=0', f'--max_queue={max_queue}'], stderr=subprocess.PIPE, text=True)
  tail = []
  for line in process.stderr:
    tail = (tail + [line])[-30:]
    match = re.search(r'Serving .* at (http://\S+/) ', line)
    if match:
      threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()
      return process, match.group(1)
  raise RuntimeError('the server did not start:\n' + ''.join(tail))


def inputs(client, names):
  """{name: [(file bytes, expression)]} from the server's examples."""
  info = client.info()
  if not info['examples']:
    raise SystemExit('the checkpoint\'s dataset has no examples here; use a workdir of '
                     'configs/demo.py')
  examples = [(client.example(e['index']), e['expressions'][0]) for e in info['examples']]
  out = {}
  for name in names:
    if name == 'example':
      out[name] = examples
    elif name == 'photo':
      photos = []
      for data, expression in examples:
        buffer = io.BytesIO()
        Image.open(io.BytesIO(data)).convert('RGB').resize((640, 480), Image.BILINEAR).save(
            buffer, format='JPEG', quality=90)
        photos.append((buffer.getvalue(), expression))
      out[name] = photos
    else:
      raise SystemExit(f'--inputs: unknown input {name!r}; known: example, photo')
  return out


def timed(client, data, expression):
  start = time.perf_counter()
  status, reply = client.request('api/image', data, expression=expression)
  return status, time.perf_counter() - start, reply


def summary(results, wall):
  answered = [t for status, t, _ in results if status == 200]
  refused = sum(status == 503 for status, _, _ in results)
  failed = len(results) - len(answered) - refused
  out = {'requests': len(results), 'answered': len(answered), 'refused_queue_full': refused,
         'failed': failed, 'wall_s': round(wall, 3),
         'answered_per_s': round(len(answered) / wall, 2)}
  if answered:
    out.update(p50_s=round(float(np.percentile(answered, 50)), 4),
               p95_s=round(float(np.percentile(answered, 95)), 4))
  return out


def main(argv):
  del argv
  process = None
  if _URL.value:
    url = _URL.value
  else:
    process, url = start_server(_WORKDIR.value, _MAX_QUEUE.value)
  client = serve.Client(url)
  results = {'url': url, 'cpu_count': os.cpu_count(), 'load_average_1min': os.getloadavg()[0]}
  try:
    cases = inputs(client, _INPUTS.value)
    sampling = [True]
    peak = [0.0]
    if process:
      time.sleep(1)
      results['rss_idle_mb'] = round(rss_mb(process.pid), 1)

      def sample():
        while sampling[0]:
          peak[0] = max(peak[0], rss_mb(process.pid))
          time.sleep(0.02)

      threading.Thread(target=sample, daemon=True).start()
    for name, pairs in cases.items():
      timed(client, *pairs[0])  # Warm (first request of this input size).
      start = time.perf_counter()
      sequential = [timed(client, *pairs[i % len(pairs)]) for i in range(_NUM.value)]
      seq = summary(sequential, time.perf_counter() - start)
      barrier = threading.Barrier(_CONCURRENT.value)

      def one(i, pairs=pairs, barrier=barrier):
        barrier.wait()
        return timed(client, *pairs[i % len(pairs)])

      start = time.perf_counter()
      with concurrent.futures.ThreadPoolExecutor(_CONCURRENT.value) as pool:
        burst = list(pool.map(one, range(_CONCURRENT.value)))
      con = summary(burst, time.perf_counter() - start)
      server_s = [r['seconds'] for s, _, r in sequential if s == 200]
      height, width = np.asarray(Image.open(io.BytesIO(pairs[0][0]))).shape[:2]
      results[name] = {'size': f'{width}x{height}', 'sequential': seq, 'concurrent': con,
                       'server_p50_s': round(float(np.median(server_s)), 4)}
    if process:
      sampling[0] = False
      results['rss_peak_mb'] = round(peak[0], 1)
      time.sleep(3)
      results['rss_after_mb'] = round(rss_mb(process.pid), 1)
  finally:
    if process:
      process.send_signal(signal.SIGTERM)
      results['server_exit_code'] = process.wait(60)
  for name in cases:
    r = results[name]
    print(f'{name} ({r["size"]}): sequential p50 {r["sequential"].get("p50_s")} s, '
          f'p95 {r["sequential"].get("p95_s")} s, {r["sequential"]["answered_per_s"]} req/s; '
          f'{_CONCURRENT.value} at once: {r["concurrent"]["answered"]} answered '
          f'(p50 {r["concurrent"].get("p50_s")} s, p95 {r["concurrent"].get("p95_s")} s), '
          f'{r["concurrent"]["refused_queue_full"]} refused (queue full), '
          f'{r["concurrent"]["failed"]} failed')
  if process:
    print(f'server RSS: idle {results["rss_idle_mb"]} MB, peak {results["rss_peak_mb"]} MB, '
          f'3 s after the burst {results["rss_after_mb"]} MB; exit code '
          f'{results["server_exit_code"]} on SIGTERM')
  if _JSON.value:
    print(json.dumps(results))


if __name__ == '__main__':
  app.run(main)
