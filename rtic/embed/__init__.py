"""Embedding models: the offline transformer encoder and the static token tables."""
