"""Scores per kind of expression: the family of a synthetic expression, or the
categories and length bucket of a real one (rules: data/categories.py).

Per sample: 'family' (synthetic) or 'groups' (real: e.g. ['spatial', 'length_4-6']).
metrics.json: family_<f>_overall_iou, with the baselines' family_<f>_baseline_<b>_overall_iou;
category_<g>_overall_iou, _mean_iou and _num_examples.
"""

from cmsa_jax.data import categories
from cmsa_jax.run import metrics
from cmsa_jax.run.evaluators import base
from cmsa_jax.run.evaluators import baselines


def members(samples):
  """{group: its samples}, groups sorted; synthetic families or real-data groups."""
  found = {}
  for s in samples:
    for group in [s['family']] if 'family' in s else s['groups']:
      found.setdefault(group, []).append(s)
  return dict(sorted(found.items()))


def _summary(samples, prefix=''):
  return metrics.summarize([s[prefix + 'intersection'] for s in samples],
                           [s[prefix + 'union'] for s in samples])


class Evaluator(base.Evaluator):

  def update(self, scored):
    if scored.family is not None:
      return {'family': scored.family}
    return {'groups': categories.groups(scored.text)}

  def results(self, samples):
    out = {}
    for group, found in members(samples).items():
      if 'family' in found[0]:
        out[f'family_{group}_overall_iou'] = _summary(found)['overall_iou']
        for name in baselines.NAMES:
          if f'baseline_{name}_union' in found[0]:
            out[f'family_{group}_baseline_{name}_overall_iou'] = _summary(
                found, f'baseline_{name}_')['overall_iou']
      else:
        scores = _summary(found)
        out.update({f'category_{group}_{k}': scores[k]
                    for k in ('overall_iou', 'mean_iou', 'num_examples')})
    return out

  def markdown(self, samples):
    groups = members(samples)
    if not groups:
      return ''
    synthetic = 'family' in samples[0]
    kind = 'family' if synthetic else 'category'
    text = (f'\nCMSA by expression {kind} (%)' +
            ('' if synthetic else ', rules in cmsa_jax/data/categories.py; an expression '
             'can be in several') + '\n\n' +
            metrics.markdown_table({g: _summary(f) for g, f in groups.items()}, first=kind))
    names = [n for n in baselines.NAMES if f'baseline_{n}_union' in samples[0]]
    if synthetic and names:
      lines = ['| family | CMSA | ' + ' | '.join(f'baseline: {n.replace("_", " ")}'
                                                for n in names) + ' |',
               '|' + '---|' * (len(names) + 2)]
      for group, found in groups.items():
        ious = [_summary(found, p)['overall_iou'] for p in [''] + [f'baseline_{n}_' for n in names]]
        lines.append(f'| {group} | ' + ' | '.join(f'{100 * v:.2f}' for v in ious) + ' |')
      text += ('\nOverall IoU by expression family, CMSA and baselines (%)\n\n' +
               '\n'.join(lines) + '\n')
    return text
