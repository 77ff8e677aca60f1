"""The interface every evaluator has, and the scored expression it reads.

An evaluator turns each scored expression into per-sample fields (`update`: one
line of WORKDIR/eval/samples.jsonl gets them), and computes its aggregates from
the sample lines alone (`results`, `markdown`), so every number of metrics.json is
recomputable from samples.jsonl. Across processes, the sample lines are gathered
(every process then holds all of them) and each evaluator's extra state, if it has
any, is combined by `merge`. `write` gets a metric writer for what is not a number
(pictures for TensorBoard).
"""

import dataclasses

import numpy as np


@dataclasses.dataclass
class Scored:
  """One expression scored at the original resolution.

  position: its place in the evaluation order (the same for any process count).
  record, sentence: its indices in the split's records and the record's sentences.
  prob: (H, W) foreground probability; target: (H, W) bool ground truth.
  image: (H, W, 3) uint8; family: the synthetic family, or None; baselines:
  {name: (H, W) bool} trivial predictions where every object is known, else {}.
  """
  position: int
  record: int
  sentence: int
  text: str
  prob: np.ndarray
  target: np.ndarray
  image: np.ndarray
  family: str | None = None
  baselines: dict = dataclasses.field(default_factory=dict)


class Evaluator:
  """One metric: `update` per expression, `merge` across processes, `results`,
  `markdown` and `write` once all expressions are in."""

  def update(self, scored):
    """The per-sample fields of one expression (a dict of JSON values)."""
    del scored
    return {}

  def state(self):
    """What this process holds beyond the sample fields (JSON), for `merge`."""
    return None

  def merge(self, states):
    """Combines every process's `state()` (in process order) into this one."""
    del states

  def results(self, samples):
    """Aggregates for metrics.json, computed from the sample lines alone."""
    del samples
    return {}

  def rows(self, samples):
    """{method name: the paper's metrics} for the method table of metrics.md."""
    del samples
    return {}

  def markdown(self, samples):
    """A section of metrics.md after the method table ('' for none)."""
    del samples
    return ''

  def write(self, writer, step):
    """Writes what is not a number (e.g. pictures) with a metric writer."""
    del writer, step
