"""The training input: dataset sources, the input pipeline, the tokenizer and vocabulary,
the synthetic scene generator."""
