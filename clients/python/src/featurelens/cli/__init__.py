"""The ``featurelens`` command line: run the services, embed corpora, inspect a server."""
