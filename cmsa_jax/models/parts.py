"""Model parts chosen by name: the registry the backbones and text encoders share.

A part is an nnx.Module built from `config.model.<kind>` (its name) and
`config.model.<kind>_args` (its keyword arguments). Every part has
  frozen: bool        whether training leaves its parameters as they are;
  load(path)          pretrained weights through an explicit key table, every
                      tensor shape-checked (errors name the arrays that differ).
What else a kind of part states (feature levels, output width) is written in
its package: cmsa_jax/models/backbones/, cmsa_jax/models/text/.
"""

from collections.abc import Mapping
import inspect

from cmsa_jax import errors


class Registry:
  """Part name -> class, for one kind of part ('backbone', 'text_encoder')."""

  def __init__(self, kind: str, parts: Mapping[str, type]):
    self.kind = kind
    self.parts = dict(parts)

  def get(self, name: str) -> type:
    """The class registered as `name`; ConfigError listing the registered ones."""
    if name not in self.parts:
      raise errors.ConfigError(
          f'config.model.{self.kind}={name!r} is not a registered {self.kind}; '
          f'registered: {", ".join(sorted(self.parts))}.')
    return self.parts[name]

  def build(self, name: str, args: Mapping | None = None, **fixed):
    """`name`'s class built with `args` (from the config) and `fixed` (from the model).

    ConfigError naming any argument the part does not take.
    """
    cls = self.get(name)
    args = dict(args or {})
    accepted = set(inspect.signature(cls.__init__).parameters) - {'self'}
    unknown = sorted(set(args) - accepted)
    if unknown:
      raise errors.ConfigError(
          f'config.model.{self.kind}_args has fields the {self.kind} {name!r} does not take: '
          f'{", ".join(unknown)}; it takes {", ".join(sorted(accepted - set(fixed)))}.')
    return cls(**args, **fixed)
