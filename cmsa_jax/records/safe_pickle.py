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

from cmsa_jax import errors


class UnpicklingError(errors.InputError, pickle.UnpicklingError):
  """A pickle file that names a global, is malformed, or holds more than plain data."""


def _latin1_bytes(text, encoding):
  if not isinstance(text, str) or encoding != 'latin1':
    raise UnpicklingError(
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
    raise UnpicklingError(
        f'refusing global {errors.one_line(module)}.{errors.one_line(name)}: only plain data '
        '(dict, list, tuple, set, str, bytes, int, float, bool, None) may be unpickled')


def load(path, *, encoding='bytes'):
  """Returns the plain data pickled in `path`, refusing anything else.

  Args:
    path: a pickle file, e.g. one written by Python 2.
    encoding: how Python 2 `str` objects are decoded; the default 'bytes'
      keeps them as bytes (see `to_text`).

  Raises:
    errors.NotFoundError (a FileNotFoundError): `path` does not exist.
    UnpicklingError (an errors.InputError and a pickle.UnpicklingError): the
      file names a global or is malformed; the message names `path`.
  """
  path = epath.Path(path)
  name = errors.one_line(path)
  if not path.exists():
    raise errors.NotFoundError(f'pickle file not found: {name}')
  with path.open('rb') as f:
    try:
      data = _PlainDataUnpickler(f, encoding=encoding).load()
    except _MALFORMED as e:
      raise UnpicklingError(f'cannot load {name}: {type(e).__name__}: '
                            f'{errors.one_line(e)}') from e
    except MemoryError:  # The unpickler allocates the length an opcode declares, then reads.
      raise UnpicklingError(f'cannot load {name}: it declares an object larger than memory '
                            f'(the file has {path.stat().length} bytes)') from None
  _check_plain(data, name)
  return data


# What the unpickler raises on malformed opcodes and arguments (bad memo index, a
# list as dict key, BUILD on a set, ...), found by tests/test_fuzz_builders.py.
_MALFORMED = (pickle.UnpicklingError, EOFError, TypeError, ValueError, KeyError,
              IndexError, AttributeError, OverflowError)


MAX_DEPTH = 100  # Containers nested deeper (annotation files nest < 10) are refused.
MAX_ITEMS = 10**8  # Items once shared containers are expanded (RefCOCO's refs: ~2 M).
_CONTAINERS = (dict, list, tuple, set, frozenset)
_LEAVES = (str, bytes, int, float)  # bool is an int; None is checked apart.


def _children(obj):
  return [x for item in obj.items() for x in item] if isinstance(obj, dict) else list(obj)


def _check_plain(data, name):
  """UnpicklingError unless `data` is a tree or DAG of containers at most MAX_DEPTH deep
  and MAX_ITEMS items once expanded, holding only plain values.

  A pickle's memo can make a list contain itself, nest lists deeper than the
  stack, or share one list so that a walk visits it 2**60 times (a "billion
  laughs"): every recursive walk (printing, TFDS, json) would fail or never end.
  Iterative: post-order heights and expanded sizes by id; a container seen again
  on its own path is a cycle.
  """
  heights, sizes, on_path, stack = {}, {}, set(), [(data, False)]
  while stack:
    node, done = stack.pop()
    if not isinstance(node, _CONTAINERS):
      if node is not None and not isinstance(node, _LEAVES):  # E.g. the class `set` itself
        raise UnpicklingError(f'cannot load {name}: it holds a {type(node).__name__}, '
                              'not plain data')  # (`c__builtin__\nset\n.`), a bytearray.
      continue
    key = id(node)
    if done:
      on_path.discard(key)
      children = _children(node)
      heights[key] = 1 + max((heights.get(id(c), 0) for c in children), default=0)
      sizes[key] = len(children) + sum(sizes.get(id(c), 0) for c in children)
      if heights[key] > MAX_DEPTH:
        raise UnpicklingError(f'cannot load {name}: containers nested deeper than {MAX_DEPTH}')
      if sizes[key] > MAX_ITEMS:
        raise UnpicklingError(f'cannot load {name}: more than {MAX_ITEMS} items once its '
                              'shared containers are expanded')
    elif key in on_path:
      raise UnpicklingError(f'cannot load {name}: a {type(node).__name__} contains itself')
    elif key not in heights:
      on_path.add(key)
      stack.append((node, True))
      stack.extend((c, False) for c in _children(node))


def to_text(obj, _memo=None):
  """Returns `obj` with every bytes (keys included) decoded to str.

  Python 2 `str` holds UTF-8 or Latin-1 text; UTF-8 is tried first, so both
  come back as the text that was written. A container referenced several times
  is converted once (a pickle's memo can share one list a billion times over).
  """
  if isinstance(obj, bytes):
    try:
      return obj.decode('utf-8')
    except UnicodeDecodeError:
      return obj.decode('latin1')
  if not isinstance(obj, _CONTAINERS):
    return obj
  memo = {} if _memo is None else _memo
  if id(obj) not in memo:
    if isinstance(obj, dict):
      memo[id(obj)] = {to_text(k, memo): to_text(v, memo) for k, v in obj.items()}
    else:
      memo[id(obj)] = type(obj)(to_text(x, memo) for x in obj)
  return memo[id(obj)]
