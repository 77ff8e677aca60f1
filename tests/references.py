"""Independent references, written in NumPy / float64 from the paper's equations
and the torchvision definitions, that the JAX modules are tested against."""

import numpy as np

from cmsa_jax.models import cmsa


# --- Eq.1 spatial feature.

def spatial_coords(h, w):
  """Cell boxes in [-1, 1] written cell by cell from the definition."""
  out = np.zeros((h, w, 8))
  for i in range(h):
    for j in range(w):
      xmin, xmax = 2 * j / w - 1, 2 * (j + 1) / w - 1
      ymin, ymax = 2 * i / h - 1, 2 * (i + 1) / h - 1
      out[i, j] = [xmin, ymin, xmax, ymax, (xmin + xmax) / 2, (ymin + ymax) / 2,
                   1 / w, 1 / h]
  return out


# --- ResNet, NCHW / OIHW as in PyTorch.

EPS = 1e-5


def ref_conv(x, w, stride=1, dilation=1):
  """torch.nn.Conv2d(bias=False, padding=dilation * (k - 1) // 2)."""
  k = w.shape[-1]
  pad = dilation * (k - 1) // 2
  x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
  ho = (x.shape[2] - dilation * (k - 1) - 1) // stride + 1
  wo = (x.shape[3] - dilation * (k - 1) - 1) // stride + 1
  out = 0
  for a in range(k):
    for b in range(k):
      tap = x[:, :, a * dilation::stride, b * dilation::stride][:, :, :ho, :wo]
      out = out + np.einsum('nihw,oi->nohw', tap, w[:, :, a, b])
  return out


def ref_maxpool(x):
  """torch.nn.MaxPool2d(3, stride=2, padding=1)."""
  x = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
  ho, wo = (x.shape[2] - 3) // 2 + 1, (x.shape[3] - 3) // 2 + 1
  return np.max([x[:, :, a::2, b::2][:, :, :ho, :wo]
                 for a in range(3) for b in range(3)], axis=0)


def ref_bn(x, sd, key):
  """Eval-mode torch.nn.BatchNorm2d."""
  c = lambda name: sd[f'{key}.{name}'][None, :, None, None]
  return (x - c('running_mean')) / np.sqrt(c('running_var') + EPS) * c(
      'weight') + c('bias')


def ref_resnet(x, sd, blocks, replace_stride_with_dilation):
  """torchvision.models.ResNet(Bottleneck, blocks, ...) up to layer4."""
  relu = lambda v: np.maximum(v, 0)
  x = relu(ref_bn(ref_conv(x, sd['conv1.weight'], stride=2), sd, 'bn1'))
  x = ref_maxpool(x)
  dilation, outs = 1, []
  for i, n in enumerate(blocks):
    stride, previous_dilation = (1 if i == 0 else 2), dilation
    if i > 0 and replace_stride_with_dilation[i - 1]:
      dilation, stride = dilation * stride, 1
    for j in range(n):
      key = f'layer{i + 1}.{j}'
      s, d = (stride, previous_dilation) if j == 0 else (1, dilation)
      y = relu(ref_bn(ref_conv(x, sd[f'{key}.conv1.weight']), sd, f'{key}.bn1'))
      y = relu(ref_bn(ref_conv(y, sd[f'{key}.conv2.weight'], s, d), sd,
                      f'{key}.bn2'))
      y = ref_bn(ref_conv(y, sd[f'{key}.conv3.weight']), sd, f'{key}.bn3')
      if f'{key}.downsample.0.weight' in sd:
        x = ref_bn(ref_conv(x, sd[f'{key}.downsample.0.weight'], s), sd,
                   f'{key}.downsample.1')
      x = relu(x + y)
    outs.append(x)
  return outs


# --- Eq.1-5: every (pixel, word) is a token.

def softmax(x, axis=-1):
  x = x - x.max(axis=axis, keepdims=True)
  e = np.exp(x)
  return e / e.sum(axis=axis, keepdims=True)


def cmsa_features(module, visual, words, mask, attention, pooling, word_weight):
  """Eq.1-5 in float64 from the equations: every (pixel, word) is a token."""
  p = lambda layer: (np.asarray(layer.kernel[...], np.float64),
                     0.0 if layer.bias is None else np.asarray(layer.bias[...], np.float64))
  b, h, w, cv = visual.shape
  n, cl = words.shape[1:]
  hw = h * w
  spatial = spatial_coords(h, w).reshape(hw, 8)
  vis = visual.reshape(b, hw, cv)
  # f[b, n, p] = [v_p, e_n, s_p] (Eq.1).
  f = np.concatenate([
      np.broadcast_to(vis[:, None], (b, n, hw, cv)),
      np.broadcast_to(words[:, :, None], (b, n, hw, cl)),
      np.broadcast_to(spatial, (b, n, hw, 8))], -1)
  valid_query = mask[:, :, None]  # (b, n, 1)
  n_valid = mask.sum(1)
  if attention == 'none':
    features = f
    weights = mask / n_valid[:, None]
    pixel_attention = np.full((b, hw), 1 / hw)
  else:
    (wq, bq), (wk, bk), (wv, bv), (wo, bo) = map(
        p, (module.query, module.key, module.value, module.out))
    q, k, v = f @ wq + bq, f @ wk + bk, f @ wv + bv
    if attention == 'full':
      logits = np.einsum('bnpd,bmqd->bnpmq', q, k)  # Eq.2
    else:
      pixel = lambda wt, bias: (vis @ wt[:cv] + spatial @ wt[cv + cl:] + bias)
      word = lambda wt: words @ wt[cv:cv + cl]
      qa, ka, qb, kb = pixel(wq, bq), pixel(wk, bk), word(wq), word(wk)
      terms = {
          'pp': np.einsum('bpd,bqd->bpq', qa, ka)[:, None, :, None, :],
          'pw': np.einsum('bpd,bmd->bpm', qa, kb)[:, None, :, :, None],
          'wp': np.einsum('bnd,bqd->bnq', qb, ka)[:, :, None, None, :],
          'ww': np.einsum('bnd,bmd->bnm', qb, kb)[:, :, None, :, None],
      }
      logits = sum(np.broadcast_to(terms[t], (b, n, hw, n, hw))
                   for t in cmsa.ATTENTION_TERMS[attention])
    logits = np.where(mask[:, None, None, :, None], logits, -np.inf)
    attn = softmax(logits.reshape(b, n, hw, n * hw)).reshape(logits.shape)
    features = f + np.einsum('bnpmq,bmqd->bnpd', attn, v) @ wo + bo  # Eq.3
    received = (attn * valid_query[..., None, None]).sum((1, 2))  # (b, m, q)
    per_word = received.sum(-1)  # Eq.4: the attention word m receives.
    fraction = per_word / (hw * n_valid[:, None])  # Of all valid queries' attention.
    if word_weight == 'mean':
      per_word = fraction
    elif word_weight == 'temperature':
      t = float(module.word_log_temperature[...])
      per_word = np.exp(t) * n_valid[:, None] * fraction
    weights = softmax(np.where(mask, per_word, -np.inf))  # Eq.4
    pixel_attention = received.sum(1) / (hw * n_valid[:, None])
  if pooling == 'attention':
    pooled = np.einsum('bn,bnpc->bpc', weights, features)  # Eq.5
  elif pooling == 'avg':
    pooled = np.einsum('bn,bnpc->bpc', mask / n_valid[:, None], features)
  else:
    pooled = np.where(valid_query[..., None], features, -np.inf).max(1)
  return [pooled.reshape(b, h, w, -1), weights, pixel_attention.reshape(b, h, w)]


# --- Eq.6-7 gated multi-level fusion.

def conv_same(x, layer):
  """'SAME' cross-correlation with an odd (k, k, in, out) kernel, + bias."""
  kernel = np.asarray(layer.kernel[...], np.float64)
  k = kernel.shape[0]
  pad = k // 2
  xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  h, w = x.shape[1:3]
  out = sum(xp[:, i:i + h, j:j + w] @ kernel[i, j] for i in range(k) for j in range(k))
  return out + np.asarray(layer.bias[...], np.float64)


def sigmoid(x):
  return 1 / (1 + np.exp(-x))


def gmlf_logits(module, features, fusion, relu=False):
  """Eq.6-7 as printed in the paper (TPAMI), written from its text:

    G^i   = (1 - m^i) * X^i + sum_{j != i} gamma^j m^j * X^j
    F_o^i = r^i * tanh(G^i) + (1 - r^i) * X^i
    P     = sigmoid(C_3x3(sum_i F_o^i))   (returned before the sigmoid)

  The self-gated ablation keeps only the level's own gated input, G^i = m^i X^i.
  """
  xs = [conv_same(f, proj) for f, proj in zip(features, module.project)]
  if relu:
    xs = [np.maximum(x, 0) for x in xs]
  if fusion in ('res5', 'sum'):
    return conv_same(sum(xs), module.score)[..., 0]
  m = [sigmoid(conv_same(x, g)) for x, g in zip(xs, module.memory_gate)]
  r = [sigmoid(conv_same(x, g)) for x, g in zip(xs, module.reset_gate)]
  fused = 0
  for i, x in enumerate(xs):
    if fusion == 'gated':
      gamma = np.asarray(module.gamma[...], np.float64)
      g = (1 - m[i]) * x + sum(gamma[j] * m[j] * xs[j] for j in range(len(xs)) if j != i)
    else:
      g = m[i] * x
    fused = fused + r[i] * np.tanh(g) + (1 - r[i]) * x
  return conv_same(fused, module.score)[..., 0]


# --- Eq.9-11 cross-frame self-attention: every (frame, pixel) of the clip is a token.

def cfsa_features(module, visual, frame_mask, frame_weight, tokens='position', values='linear'):
  """Eq.9-11 in float64, written from the equations (see cmsa_jax/models/cfsa.py's
  docstring: the token g_tp = [v_tp, s_p, δ_t], v_tp, or [v_tp, δ_t] with the
  locality term -λ ||x_p - x_p'||² in the logits and the value of key j for query
  i built from [v_j, x_j - x_i, δ_j] ('relative'); values W_v g + b or
  W_v [g, δ g, δ² g] + b): one softmax row per query token, column sums of the
  attention over the valid queries, Eq.4's normalisations.

  Returns [V_c + V̂ (B, h, w, C), α (B, T), frame-to-frame attention (B, T, T),
  the annotated frame's queries' attention rows r (B, hw, T hw)].
  """
  p = lambda layer: (np.asarray(layer.kernel[...], np.float64),
                     0.0 if layer.bias is None else np.asarray(layer.bias[...], np.float64))
  b, t, h, w, c = visual.shape
  centre, hw, tau = t // 2, h * w, max(t // 2, 1)
  valid = np.asarray(frame_mask, bool).copy()
  valid[:, centre] = True
  moments = lambda g, delta: (np.concatenate([g, delta * g, delta ** 2 * g], -1)
                              if values == 'moments' else g)
  outputs = [[], [], [], []]
  for i in range(b):
    g, owner, xy = [], [], []
    for f in range(t):
      for y in range(h):
        for x in range(w):
          s_p = spatial_coords(h, w)[y, x]
          where = {'position': [s_p, [(f - centre) / tau]], 'relative': [[(f - centre) / tau]],
                   'visual': []}[tokens]
          g.append(np.concatenate([visual[i, f, y, x]] + where))
          owner.append(f)
          xy.append(s_p[4:6])  # The cell's centre.
    g, owner, xy = np.asarray(g), np.asarray(owner), np.asarray(xy, np.float64)
    delta = ((owner - centre) / tau)[:, None]
    (wq, bq), (wk, bk), (wv, bv), (wo, bo) = map(
        p, (module.query, module.key, module.value, module.out))
    logits = (g @ wq + bq) @ (g @ wk + bk).T
    if tokens == 'relative':
      lam = np.exp(float(module.log_locality[...]))
      logits = logits - lam * ((xy[:, None] - xy[None]) ** 2).sum(-1)
      # value[i, j]: key j seen from query i.
      g_hat = np.concatenate([
          np.broadcast_to(visual[i].reshape(t * hw, c)[None], (t * hw, t * hw, c)),
          xy[None] - xy[:, None], np.broadcast_to(delta[None], (t * hw, t * hw, 1))], -1)
      v = moments(g_hat, np.broadcast_to(delta[None], (t * hw, t * hw, 1))) @ wv + bv
    else:
      v = moments(g, delta) @ wv + bv
    key_ok = valid[i][owner]
    r = softmax(np.where(key_ok[None, :], logits, -np.inf))  # Eq.9, rows: queries.
    attended = np.einsum('ij,ijd->id', r, v) if v.ndim == 3 else r @ v
    v_hat = attended @ wo + bo  # Eq.10
    pair = np.zeros((t, t))  # Attention frame s's queries put on frame u.
    for s in range(t):
      for u in range(t):
        pair[s, u] = r[np.ix_(owner == s, owner == u)].sum() / hw * valid[i][s]
    received = pair.sum(0) * hw  # Eq.11: column sums over the valid queries.
    fraction = received / (hw * valid[i].sum())
    if frame_weight == 'sum':
      logit = received
    elif frame_weight == 'mean':
      logit = fraction
    else:
      logit = np.exp(float(module.frame_log_temperature[...])) * valid[i].sum() * fraction
    alpha = softmax(np.where(valid[i], logit, -np.inf)[None])[0]
    pooled = sum(alpha[f] * v_hat[owner == f] for f in range(t))  # V̂
    outputs[0].append((visual[i, centre].reshape(hw, c) + pooled).reshape(h, w, c))
    outputs[1].append(alpha)
    outputs[2].append(pair)
    outputs[3].append(r[owner == centre])
  return [np.stack(o) for o in outputs]


# --- Contextual text encoders, one expression (its L valid words) at a time.

def _sigmoid(x):
  return 1 / (1 + np.exp(-x))


def lstm(x, gates):
  """LSTM (Hochreiter & Schmidhuber 1997, with Gers et al.'s forget gate) over x (L, in)
  from h = c = 0; gates: {'i'|'f'|'g'|'o': (W (in, H), U (H, H), b (H,))}."""
  hidden = gates['i'][2].shape[0]
  h, c, out = np.zeros(hidden), np.zeros(hidden), []
  for x_t in x:
    pre = {name: x_t @ w + h @ u + b for name, (w, u, b) in gates.items()}
    i, f, o = _sigmoid(pre['i']), _sigmoid(pre['f']), _sigmoid(pre['o'])
    c = f * c + i * np.tanh(pre['g'])
    h = o * np.tanh(c)
    out.append(h)
  return np.array(out)


def bilstm(x, layers):
  """Bidirectional LSTM layers: [forward h_n, backward h_n] for each word of x (L, in);
  layers: [(forward gates, backward gates)]."""
  for forward, backward in layers:
    x = np.concatenate([lstm(x, forward), lstm(x[::-1], backward)[::-1]], axis=-1)
  return x


def layer_norm(x, scale, bias, eps=1e-6):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * scale + bias


def gelu(x):
  from math import erf  # pylint: disable=g-import-not-at-top
  return 0.5 * x * (1 + np.vectorize(erf)(x / np.sqrt(2)))


def multi_head_attention(y, p, heads):
  """Vaswani et al. (2017): concat_h softmax(Q_h K_h^T / sqrt(d_h)) V_h, then W_O."""
  q, k, v = (y @ p[name][0] + p[name][1] for name in ('query', 'key', 'value'))
  d = q.shape[-1] // heads
  outs = []
  for h in range(heads):
    cols = slice(h * d, (h + 1) * d)
    logits = q[:, cols] @ k[:, cols].T / np.sqrt(d)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    outs.append(weights / weights.sum(-1, keepdims=True) @ v[:, cols])
  return np.concatenate(outs, -1) @ p['out'][0] + p['out'][1]


def transformer_encoder(x, layers, final_norm, heads):
  """Pre-LN transformer encoder layers on x (L, dim) (positions already added)."""
  for p in layers:
    x = x + multi_head_attention(layer_norm(x, *p['attention_norm']), p, heads)
    y = layer_norm(x, *p['mlp_norm'])
    x = x + gelu(y @ p['mlp_in'][0] + p['mlp_in'][1]) @ p['mlp_out'][0] + p['mlp_out'][1]
  return layer_norm(x, *final_norm)


# --- BERT (Devlin et al., 2019; the Transformer encoder of Vaswani et al., 2017), float64.

def bert_encoder(sd, ids, mask, heads):
  """BERT's last hidden states (B, T, D) of packed sequences `ids` (B, T) with
  attention mask (B, T) (False on [PAD] at the end), segment 0 everywhere.

  `sd`: torch-layout state dict (Linear weight (out, in)), no `bert.` prefix.
  """
  sd = {k: np.asarray(v, np.float64) for k, v in sd.items()}
  b, t = ids.shape
  x = (sd['embeddings.word_embeddings.weight'][ids]
       + sd['embeddings.position_embeddings.weight'][np.arange(t)][None]
       + sd['embeddings.token_type_embeddings.weight'][0][None, None])
  x = layer_norm(x, sd['embeddings.LayerNorm.weight'], sd['embeddings.LayerNorm.bias'],
                 eps=1e-12)
  linear = lambda y, key: y @ sd[f'{key}.weight'].T + sd[f'{key}.bias']
  layer = 0
  while f'encoder.layer.{layer}.attention.self.query.weight' in sd:
    p = f'encoder.layer.{layer}'
    d = x.shape[-1]
    dh = d // heads
    out = np.zeros_like(x)
    for h in range(heads):
      cols = slice(h * dh, (h + 1) * dh)
      q = linear(x, f'{p}.attention.self.query')[..., cols]
      k = linear(x, f'{p}.attention.self.key')[..., cols]
      v = linear(x, f'{p}.attention.self.value')[..., cols]
      scores = q @ k.transpose(0, 2, 1) / np.sqrt(dh) + np.where(mask[:, None, :], 0, -1e9)
      out[..., cols] = softmax(scores) @ v
    x = layer_norm(x + linear(out, f'{p}.attention.output.dense'),
                   sd[f'{p}.attention.output.LayerNorm.weight'],
                   sd[f'{p}.attention.output.LayerNorm.bias'], eps=1e-12)
    ffn = linear(gelu(linear(x, f'{p}.intermediate.dense')), f'{p}.output.dense')
    x = layer_norm(x + ffn, sd[f'{p}.output.LayerNorm.weight'],
                   sd[f'{p}.output.LayerNorm.bias'], eps=1e-12)
    layer += 1
  return x
