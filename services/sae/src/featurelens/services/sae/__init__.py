"""featurelens sae service: top-k sparse autoencoders over gRPC (encode, decode, steer, train)."""
