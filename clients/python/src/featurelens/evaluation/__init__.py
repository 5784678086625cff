"""`featurelens eval`: the paper's findings measured on a running featurelens stack, through the SDK.

Each part (scaling, labels, steering, families) returns a ``Section``; ``write_report`` writes the
sections as ``report.json``, their PNG figures and a Markdown summary into one folder.
"""
