"""Rematerialization switches: `jax.checkpoint` of a model part with a named policy.

A checkpointed part keeps only what its policy saves for the backward pass and
recomputes the rest there: less memory, more compute. Nothing changes where no
gradient flows (e.g. the frozen backbone of the paper's setting).
"""

import jax
from flax import nnx

from cmsa_jax import errors

# Name -> what the backward pass finds saved ('none': no checkpoint at all).
POLICIES = {
    'none': None,
    'full': jax.checkpoint_policies.nothing_saveable,  # Everything recomputed.
    'dots': jax.checkpoint_policies.dots_saveable,  # Matmul/conv outputs kept.
    'dots_no_batch': jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def check(name, policy):
  if policy not in POLICIES:
    raise errors.ConfigError(f'{name} must be one of {tuple(POLICIES)}, got {policy!r}.')


def wrap(fn, policy):
  """`fn(module, *args)` checkpointed with the named policy ('none': fn itself).

  The module must not be mutated by `fn` (its state is read, never written back).
  """
  if policy == 'none':
    return fn

  def checkpointed(module, *args):
    graphdef, state = nnx.split(module)
    pure = lambda state, *args: fn(nnx.merge(graphdef, state), *args)
    return jax.checkpoint(pure, policy=POLICIES[policy])(state, *args)

  return checkpointed
