"""The demo with a pretrained BERT text encoder in place of the paper's word embedding.

  python main.py --config=configs/demo_bert.py --workdir=runs/demo_bert \
      --config.text_encoder_init=bert-base-uncased/model.safetensors \
      --config.model.text_args.tokenizer=bert-base-uncased/tokenizer.json

Get `model.safetensors` and `tokenizer.json` (or `vocab.txt`) of bert-base-uncased once,
on a machine with internet, from https://huggingface.co/google-bert/bert-base-uncased
(Files); the paths above are the defaults (relative to the working directory). Nothing
is downloaded here; a missing file stops with a one-line error saying where to get it.

BERT is frozen (`--config.model.text_args.frozen=False` fine-tunes it, at the model's
learning rate). Each word's feature e_n is the output of its first WordPiece piece.

Result: not measured (no BERT weights on the development machine). Runtime: a train
step takes 4.6x the demo's (BERT-base with random weights of its size, measured in one
run on the shared 2-core CPU); estimated from it (not measured idle): ~0.75 s on the idle
machine, where the demo's step takes 0.16 s, so ~25 min for the 2000 steps.
"""

import os

import ml_collections

from configs import demo

BERT_DIR = 'bert-base-uncased'


def get_config():
  config = demo.get_config()
  config.model.text_encoder = 'bert'
  config.model.text_args = ml_collections.ConfigDict(dict(
      tokenizer=os.path.join(BERT_DIR, 'tokenizer.json'),  # or vocab.txt
      frozen=True,
      subword_pooling='first',  # or 'mean'
      max_pieces=4,  # WordPiece pieces kept per word.
      max_sequence=16,  # [CLS] + pieces + [SEP]: the synthetic expressions' 10 words fit.
      # bert-base-uncased's size and special ids (bert-large: 24 layers, 1024, 16 heads, 4096).
      layers=12, hidden=768, heads=12, intermediate=3072, max_positions=512, type_vocab=2,
      cls_id=101, sep_id=102))
  config.text_encoder_init = os.path.join(BERT_DIR, 'model.safetensors')
  return config
