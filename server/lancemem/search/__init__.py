"""Search: the embedding model and ranking."""
