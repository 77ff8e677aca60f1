"""jhmdb_sentences: JHMDB Sentences, referring expressions for J-HMDB actors (see README.md)."""
