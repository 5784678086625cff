"""Generated gRPC stubs of the featurelens.v1 API (do not edit; run `make protos`)."""
