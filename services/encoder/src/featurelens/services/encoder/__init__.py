"""featurelens encoder service: text to dense embeddings over gRPC, with an embedding cache."""
