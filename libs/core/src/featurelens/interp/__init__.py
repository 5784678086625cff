"""Automated interpretability: choose a feature's examples, label it, score the label.

A plain library (no gRPC, Redis or environment): the labelling service, the benchmarks and
``featurelens eval`` all call it.
"""
