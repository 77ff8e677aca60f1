"""User mistakes: main.py reports these in one line, anything else with a traceback.

Each also subclasses the built-in error it refines, so callers that catch
ValueError / FileNotFoundError keep working.
"""

import contextlib
import struct

# What parsers of untrusted bytes (Pillow, numpy, csv, h5py, scipy.io, ...) raise on a
# malformed file; readers turn them into an InputError naming the file (tests/test_fuzz_*.py
# found each kind).
MALFORMED_INPUT = (OSError, ValueError, TypeError, SyntaxError, EOFError, IndexError, KeyError,
                   ArithmeticError, struct.error)


class UserError(Exception):
  """A mistake in the command line, the config or the inputs, not in the code."""


class ConfigError(UserError, ValueError):
  """A config field or flag with a bad value, or a combination that cannot work."""


class InputError(UserError, ValueError):
  """A prediction input (image, expression) the model cannot take."""


class NotFoundError(UserError, FileNotFoundError):
  """A dataset, checkpoint or file that is not there."""


class MissingPackageError(UserError, ImportError):
  """An input that needs an optional package which is not installed (torch for .pth files)."""


class NumericalError(UserError, FloatingPointError):
  """Training produced a non-finite loss or gradient (usually a too-high learning rate)."""


def one_line(value):
  """`value` as text with line breaks and other control characters escaped (`\\n`, `\\x1b`),
  so a message naming a user's file or text stays one line whatever the name holds."""
  text = str(value)
  if text.isprintable():
    return text
  return ''.join(c if c.isprintable() or c == ' ' else c.encode('unicode_escape').decode('ascii')
                 for c in text)


@contextlib.contextmanager
def reading_as_input(name, exceptions, what):
  """Turns `exceptions` raised within (a parser failing on bad bytes) into an InputError
  "NAME: WHAT (Type: message)" in one line; UserErrors pass unchanged."""
  try:
    yield
  except UserError:
    raise
  except exceptions as e:
    raise InputError(f'{one_line(name)}: {what} ({type(e).__name__}: {one_line(e)})') from None
