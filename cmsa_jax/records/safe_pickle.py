"""Loads pickled annotation files without letting them run code.

`pickle.load` calls whatever callable a file names, so a downloaded annotation
file (e.g. the refer toolkit's `refs(unc).p`) could run arbitrary commands.
`load` admits plain data only: dict, list, tuple, set, frozenset, str, bytes,
int, float, bool and None. Every global is refused, except the few that
protocols 0-2 use to spell those same types (`set`, `frozenset`, empty
`bytes`, and `_codecs.encode(text, 'latin1')` for bytes written by Python 3),
which map to constructors that can build nothing else.
"""

import pickle

from etils import epath


def _latin1_bytes(text, encoding):
  if not isinstance(text, str) or encoding != 'latin1':
    raise pickle.UnpicklingError(
        f'refusing _codecs.encode({type(text).__name__}, {encoding!r}): only '
        "the (str, 'latin1') form that pickles bytes is allowed")
  return text.encode('latin1')


def _empty_bytes():
  return b''


# The globals protocols 0-2 use to spell admitted types -> safe constructors.
_CONSTRUCTORS = {
    ('builtins', 'set'): set,
    ('builtins', 'frozenset'): frozenset,
    ('builtins', 'bytes'): _empty_bytes,
    ('_codecs', 'encode'): _latin1_bytes,
}


class _PlainDataUnpickler(pickle.Unpickler):
  """Unpickler whose `find_class` refuses every global but `_CONSTRUCTORS`."""

  def find_class(self, module, name):
    key = ('builtins' if module == '__builtin__' else module, name)  # Py2 name.
    if key in _CONSTRUCTORS:
      return _CONSTRUCTORS[key]
    raise pickle.UnpicklingError(
        f'refusing global {module}.{name}: only plain data (dict, list, tuple, '
        'set, str, bytes, int, float, bool, None) may be unpickled')


def load(path, *, encoding='bytes'):
  """Returns the plain data pickled in `path`, refusing anything else.

  Args:
    path: a pickle file, e.g. one written by Python 2.
    encoding: how Python 2 `str` objects are decoded; the default 'bytes'
      keeps them as bytes (see `to_text`).

  Raises:
    FileNotFoundError: `path` does not exist.
    pickle.UnpicklingError: the file names a global or is malformed; the
      message names `path`.
  """
  path = epath.Path(path)
  if not path.exists():
    raise FileNotFoundError(f'pickle file not found: {path}')
  with path.open('rb') as f:
    try:
      return _PlainDataUnpickler(f, encoding=encoding).load()
    except (pickle.UnpicklingError, EOFError, TypeError, ValueError) as e:
      raise pickle.UnpicklingError(f'cannot load {path}: {e}') from e


def to_text(obj):
  """Returns `obj` with every bytes (keys included) decoded to str.

  Python 2 `str` holds UTF-8 or Latin-1 text; UTF-8 is tried first, so both
  come back as the text that was written.
  """
  if isinstance(obj, bytes):
    try:
      return obj.decode('utf-8')
    except UnicodeDecodeError:
      return obj.decode('latin1')
  if isinstance(obj, dict):
    return {to_text(k): to_text(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple, set, frozenset)):
    return type(obj)(to_text(x) for x in obj)
  return obj
