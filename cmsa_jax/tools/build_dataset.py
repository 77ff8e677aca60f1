"""Builds a TFDS dataset as array_record, without TensorFlow.

  python -m cmsa_jax.tools.build_dataset <name>/<config> --manual_dir=M --data_dir=D
  python -m cmsa_jax.tools.build_dataset <name> --manual_dir=M --data_dir=D

<name> is a builder of this repository, `datasets/<name>/<name>_dataset_builder.py`
(found from the cmsa_jax package, so it works from any directory), or one
registered with TFDS; without `<config>` a builder with configs builds its default one.
Source files are read from the manual dir, never downloaded. Read the result
with `tfds.data_source('<name>/<config>', data_dir=D)`.

An example whose source files are broken (unreadable image, bad polygon,
missing mask file) is skipped with a warning and counted in the summary;
`--strict` stops at the first one instead, naming it.
"""

import os
import pathlib
import sys

from absl import app
from absl import flags
import tensorflow_datasets as tfds

import cmsa_jax
from cmsa_jax import errors
from cmsa_jax.records import broken

DATASETS_DIR = pathlib.Path(cmsa_jax.__file__).resolve().parent.parent / 'datasets'

_MANUAL_DIR = flags.DEFINE_string(
    'manual_dir', None, 'Directory holding the source files in their authors\' layout.')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'Where the built dataset is written.')
_STRICT = flags.DEFINE_bool(
    'strict', False, 'Stop at the first broken source example (default: skip and count it).')


def local_builders():
  """Names of the builders in this repository's `datasets/`."""
  return sorted(p.parent.name for p in DATASETS_DIR.glob('*/*_dataset_builder.py')
                if p.name == f'{p.parent.name}_dataset_builder.py')


def builder_class(name):
  """The builder class of `name`: `datasets/<name>/` first, then TFDS's registry."""
  if name in local_builders():
    # Imported as `<name>.<name>_dataset_builder`, as `tfds build` does.
    with tfds.core.utils.add_sys_path(DATASETS_DIR):
      return tfds.core.community.builder_cls_from_module(f'{name}.{name}_dataset_builder')
  try:
    return tfds.builder_cls(name)
  except tfds.core.registered.DatasetNotFoundError:
    raise errors.ConfigError(f'Unknown dataset {name!r}. This repository has {local_builders()} '
                     f'(in {DATASETS_DIR}); see tfds.list_builders() for the '
                     'registered ones.') from None


def make_builder(spec, data_dir):
  """The builder for `spec` ('<name>/<config>' or '<name>') writing to `data_dir`."""
  name, _, config = spec.partition('/')
  cls = builder_class(name)
  configs = [c.name for c in cls.BUILDER_CONFIGS]
  if configs and not config:
    config = cls.DEFAULT_BUILDER_CONFIG_NAME or configs[0]
    print(f'{name}: building its default config {config!r} (configs: {configs}).')
  if configs and config not in configs:
    raise errors.ConfigError(f'{name} has no config {config!r}; use {name}/<config> with one of '
                     f'{configs}.')
  if config and not configs:
    raise errors.ConfigError(f'{name} has no configs; got {spec!r}, use {name!r}.')
  return cls(config=config or None, data_dir=data_dir)


def prepare(builder, manual_dir, *, strict=False):
  """Writes `builder`'s splits as array_record from the files in `manual_dir`.

  Broken source examples are skipped and counted, or with `strict` stop the build.
  """
  with broken.strict_mode(strict):
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir),
        file_format='array_record')


def summary(builder):
  """Where the dataset is, the size of each split and the broken examples skipped."""
  info = builder.info
  lines = [f'{info.full_name} in {builder.data_dir}']
  lines += [f'  {name}: {split.num_examples} examples, {split.num_bytes}'
            for name, split in info.splits.items()]
  lines.append(f'  total: {info.dataset_size}')
  lines += [f'  {line}' for line in broken.report()]
  return '\n'.join(lines)


def main(argv):
  if len(argv) != 2:
    raise app.UsageError('Expected one dataset, as <name>/<config> or <name>.')
  if not _DATA_DIR.value:
    raise app.UsageError('--data_dir is required.')
  tfds.display_progress_bar(True)
  try:
    builder = make_builder(argv[1], os.path.expanduser(_DATA_DIR.value))
  except errors.ConfigError as e:
    raise app.UsageError(str(e)) from e
  try:
    prepare(builder, _MANUAL_DIR.value and os.path.expanduser(_MANUAL_DIR.value),
            strict=_STRICT.value)
  except (errors.UserError, FileNotFoundError) as e:  # A broken or missing source file.
    sys.exit(f'Error: {e}')
  print(summary(builder))


if __name__ == '__main__':
  app.run(main)
