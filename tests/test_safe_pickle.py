"""Tests for cmsa_jax.records.safe_pickle."""

import os
import pickle
import struct

import pytest

from cmsa_jax.records import safe_pickle


class _RunsCommand:
  """Unpickling this with `pickle.load` runs `touch <marker>`."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return os.system, (f'touch {self.marker}',)


def _write(tmp_path, data, name='x.p'):
  path = tmp_path / name
  path.write_bytes(data)
  return path


@pytest.mark.parametrize('protocol', [0, 2, pickle.HIGHEST_PROTOCOL])
def test_refuses_command_payload_without_running_it(tmp_path, protocol):
  marker = tmp_path / 'pwned'
  payload = pickle.dumps([{'ok': 1}, _RunsCommand(marker)], protocol=protocol)
  path = _write(tmp_path, payload)
  with pytest.raises(pickle.UnpicklingError, match='system') as err:
    safe_pickle.load(path)
  assert str(path) in str(err.value)
  assert not marker.exists()
  pickle.loads(payload)  # The same bytes do run the command with pickle.
  assert marker.exists()


@pytest.mark.parametrize('payload', [
    b'\x80\x02c__builtin__\neval\nX\x06\x00\x00\x001 + 1\x85R.',
    b'\x80\x02c__builtin__\ngetattr\n.',
    b'\x80\x02c__builtin__\nbytes\nJ\x00\xca\x9a;\x85R.',  # bytes(10**9).
    b'\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x04\x00\x00\x00zlib\x86R.',
])
def test_refuses_other_globals(tmp_path, payload):
  with pytest.raises(pickle.UnpicklingError, match='cannot load .*x.p'):
    safe_pickle.load(_write(tmp_path, payload))


@pytest.mark.parametrize('protocol', range(pickle.HIGHEST_PROTOCOL + 1))
def test_loads_plain_data_at_every_protocol(tmp_path, protocol):
  data = {'a': [1, 2.5, None, True], b'b': (b'\xff', b''), 'c': {3, 4},
          'd': frozenset({'x'}), 'e': -(2**70)}
  path = _write(tmp_path, pickle.dumps(data, protocol=protocol))
  assert safe_pickle.load(path) == data


def _py2_str(raw):
  """Python 2 protocol-2 opcode for a `str` (byte string): SHORT_BINSTRING."""
  return b'U' + bytes([len(raw)]) + raw


def _py2_unicode(text):
  raw = text.encode('utf-8')
  return b'X' + struct.pack('<I', len(raw)) + raw


_PY2_PROTOCOL2 = (  # {'raw': <str, UTF-8>, u'sent': <unicode>, 'x': <str, Latin-1>}
    b'\x80\x02}(' + _py2_str(b'raw') + _py2_str('café'.encode('utf-8'))
    + _py2_unicode('sent') + _py2_unicode('naïve') + _py2_str(b'x')
    + _py2_str('é'.encode('latin1')) + b'u.')
_PY2_PROTOCOL0 = (  # The same as Python 2's default protocol writes it.
    b"(dp0\nS'raw'\np1\nS'caf\\xc3\\xa9'\np2\nsVsent\np3\nVna\\u00efve\np4\n"
    b"sS'x'\np5\nS'\\xe9'\np6\ns.")


@pytest.mark.parametrize('payload', [_PY2_PROTOCOL2, _PY2_PROTOCOL0])
def test_python2_strings_become_text(tmp_path, payload):
  loaded = safe_pickle.load(_write(tmp_path, payload))
  assert loaded[b'raw'] == 'café'.encode('utf-8')
  assert safe_pickle.to_text(loaded) == {'raw': 'café', 'sent': 'naïve', 'x': 'é'}


def test_errors_name_the_file(tmp_path):
  with pytest.raises(FileNotFoundError, match='missing.p'):
    safe_pickle.load(tmp_path / 'missing.p')
  truncated = _write(tmp_path, pickle.dumps({'a': 1}, protocol=2)[:-3], 'cut.p')
  with pytest.raises(pickle.UnpicklingError, match='cut.p'):
    safe_pickle.load(truncated)
