"""featurelens Python SDK: typed sync and async clients for the featurelens gRPC services."""
