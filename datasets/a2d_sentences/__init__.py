"""a2d_sentences: A2D Sentences, referring expressions for actors in videos (see README.md)."""
