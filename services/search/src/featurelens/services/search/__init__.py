"""featurelens search service: indexes corpora into Qdrant; dense, sparse, hybrid and steered search."""
