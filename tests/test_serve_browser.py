"""The --mode=serve page in a real headless browser (Debian's chromium and
chromium-driver, driven by Selenium; .ci/run installs them): upload an image, type the
expression, submit, read the overlay and the word-attention labels; bad inputs show a
message in the page and the next good request still works."""

import os
from pathlib import Path
import shutil

import numpy as np
import pytest

import serve_helpers
from cmsa_jax.data import text

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group('serve')]
SCREENSHOTS = Path(os.environ.get('SERVE_SCREENSHOTS', '')) if os.environ.get(
    'SERVE_SCREENSHOTS') else None


def _find(*names):
  return next((shutil.which(n) for n in names if shutil.which(n)), None)


CHROMIUM = _find('chromium', 'chromium-browser', 'google-chrome')
DRIVER = _find('chromedriver')


@pytest.fixture(scope='module')
def browser():
  if not (CHROMIUM and DRIVER):
    message = 'needs chromium and chromedriver (apt-get install chromium chromium-driver)'
    if os.environ.get('CI'):
      pytest.fail(message + '; .ci/run installs them')
    pytest.skip(message)
  from selenium import webdriver  # pylint: disable=g-import-not-at-top
  options = webdriver.ChromeOptions()
  options.binary_location = CHROMIUM
  for argument in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
                   '--window-size=1400,1100', '--no-first-run', '--disable-extensions'):
    options.add_argument(argument)
  driver = webdriver.Chrome(options=options,
                            service=webdriver.ChromeService(executable_path=DRIVER))
  driver.set_page_load_timeout(60)
  yield driver
  driver.quit()


@pytest.fixture
def app(serve_image_app):
  return serve_image_app[1:]


def _submit(driver, path, expression, kind='image'):
  """Uploads `path`, types `expression`, submits; (error text, status text) once answered."""
  from selenium.webdriver.common.by import By  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.support.ui import WebDriverWait  # pylint: disable=g-import-not-at-top
  driver.find_element(By.ID, f'{kind}-file').send_keys(str(path))
  box = driver.find_element(By.ID, f'{kind}-expression')
  box.clear()
  box.send_keys(expression)
  driver.execute_script(f"document.getElementById('{kind}-status').textContent = 'waiting';")
  driver.find_element(By.ID, f'{kind}-submit').click()
  done = lambda d: (d.find_element(By.ID, f'{kind}-error').is_displayed() or
                    d.find_element(By.ID, f'{kind}-status').text.startswith('Done'))
  WebDriverWait(driver, 60).until(done)
  error = driver.find_element(By.ID, f'{kind}-error')
  status = driver.find_element(By.ID, f'{kind}-status').text
  return (error.text if error.is_displayed() else ''), status


def _open(driver, url):
  from selenium.webdriver.common.by import By  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.support.ui import WebDriverWait  # pylint: disable=g-import-not-at-top
  driver.get(url)
  WebDriverWait(driver, 30).until(lambda d: d.find_element(By.TAG_NAME, 'body')
                                  .get_attribute('data-ready') == 'true')


def _loaded(driver, element):
  """naturalWidth of an <img> once it has loaded."""
  from selenium.webdriver.support.ui import WebDriverWait  # pylint: disable=g-import-not-at-top
  script = 'return arguments[0].complete && arguments[0].naturalWidth'
  WebDriverWait(driver, 10).until(lambda d: d.execute_script(script, element))
  return driver.execute_script(script, element)


def test_page_segments_an_upload_and_shows_the_word_attention(browser, app, tmp_path):
  from selenium.webdriver.common.by import By  # pylint: disable=g-import-not-at-top
  url, segmenter = app
  _open(browser, url)
  assert 'image model' in browser.find_element(By.ID, 'model-info').text
  assert not browser.find_element(By.ID, 'tab-video').is_enabled()  # An image checkpoint.
  examples = browser.find_elements(By.CLASS_NAME, 'example-expression')
  assert examples, 'the held-out examples are listed'
  expression = examples[0].text
  path = tmp_path / 'scene.png'
  path.write_bytes(serve_helpers.encode(serve_helpers.scene(60, 80)))
  error, status = _submit(browser, path, expression)
  assert error == '' and status.startswith('Done in'), (error, status)
  assert _loaded(browser, browser.find_element(By.ID, 'image-overlay')) == 80
  assert _loaded(browser, browser.find_element(By.ID, 'image-heatmap')) == 80
  levels = browser.find_elements(By.CSS_SELECTOR, '#image-attention .level')
  assert len(levels) == len(segmenter.model.levels)
  words = text.tokenize(expression)[:segmenter.saved.max_words]
  for level in levels:
    labels = [e.text for e in level.find_elements(By.CLASS_NAME, 'word-label')]
    assert labels == words
    values = [float(e.text) for e in level.find_elements(By.CLASS_NAME, 'val')]
    assert len(values) == len(words) and all(0 <= v <= 1 for v in values)
  assert 'Download the mask (PNG, 80 x 60' in browser.find_element(By.ID, 'image-mask').text
  shot = (SCREENSHOTS or tmp_path) / 'serve_page.png'
  shot.parent.mkdir(parents=True, exist_ok=True)
  assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


def test_page_shows_each_bad_input_and_goes_on(browser, app, tmp_path):
  from selenium.webdriver.common.by import By  # pylint: disable=g-import-not-at-top
  url, segmenter = app
  _open(browser, url)
  words = ' '.join(text.tokenize(segmenter.vocab.words[2]))
  files = {
      'notes.txt': b'not an image',
      'cut.jpg': serve_helpers.encode(serve_helpers.scene(), 'JPEG')[:300],
      'huge.png': serve_helpers.encode(np.zeros((400, 400, 3), np.uint8)),
      'big.bin': os.urandom(600_000),
      'dot.png': serve_helpers.encode(np.full((1, 1, 3), 255, np.uint8)),
      'good.png': serve_helpers.encode(serve_helpers.scene(60, 80)),
  }
  for name, data in files.items():
    (tmp_path / name).write_bytes(data)
  cases = [('notes.txt', words, 'notes.txt: not a readable image'),
           ('cut.jpg', words, 'cut.jpg: not a readable image'),
           ('huge.png', words, 'the limit is 90,000 (--max_pixels)'),
           ('big.bin', words, 'big.bin is 0.6 MB; the upload limit is 0.5 MB'),
           ('good.png', '   ', 'is empty'),
           ('good.png', 'zebra giraffe', 'has no word in the vocabulary')]
  for name, expression, message in cases:
    error, _ = _submit(browser, tmp_path / name, expression)
    assert message in error, (name, error)
  error, status = _submit(browser, tmp_path / 'dot.png', words)  # Answered, with a note.
  assert error == '' and status.startswith('Done')
  assert 'only 1 x 1 pixels' in browser.find_element(By.ID, 'image-notes').text
  error, status = _submit(browser, tmp_path / 'good.png', ' '.join([words] * 500))
  assert error == '' and 'more were ignored' in browser.find_element(By.ID, 'image-notes').text
  error, status = _submit(browser, tmp_path / 'good.png', words)
  assert error == '' and status.startswith('Done')
  assert not browser.find_element(By.ID, 'image-notes').is_displayed()


@pytest.fixture
def video_app(serve_video_app):
  return serve_video_app[1:]


def test_video_tab_segments_a_video_and_shows_bad_ones(browser, video_app, tmp_path):
  from selenium.webdriver.common.by import By  # pylint: disable=g-import-not-at-top
  url, segmenter = video_app
  _open(browser, url)
  assert not browser.find_element(By.ID, 'tab-image').is_enabled()  # A video checkpoint.
  assert browser.find_element(By.ID, 'panel-video').is_displayed()
  words = browser.find_elements(By.CLASS_NAME, 'example-expression')[0].text
  for name, data in (('clip.mp4', serve_helpers.mp4(5)), ('one.mp4', serve_helpers.mp4(1)),
                     ('notes.mp4', b'not a video')):
    (tmp_path / name).write_bytes(data)
  error, _ = _submit(browser, tmp_path / 'notes.mp4', words, 'video')
  assert 'notes.mp4: not a readable video' in error
  error, status = _submit(browser, tmp_path / 'one.mp4', words, 'video')
  assert error == '' and 'has 1 frame' in browser.find_element(By.ID, 'video-notes').text
  error, status = _submit(browser, tmp_path / 'clip.mp4', words, 'video')
  assert error == '' and status.startswith('Done'), (error, status)
  assert _loaded(browser, browser.find_element(By.ID, 'video-overlay')) == 48
  assert _loaded(browser, browser.find_element(By.ID, 'video-attention')) > 100
  assert 'masks of the 5 frames' in browser.find_element(By.ID, 'video-masks').text
  assert not browser.find_element(By.ID, 'video-notes').is_displayed()
  shot = (SCREENSHOTS or tmp_path) / 'serve_page_video.png'
  assert browser.save_screenshot(str(shot))
