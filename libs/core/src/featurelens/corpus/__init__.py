"""Reading document corpora (JSONL, CSV, Parquet) into validated `Record`s."""

from featurelens.corpus.holdout import DEFAULT_HOLDOUT_FRACTION, held_out
from featurelens.corpus.reader import CorpusFormat, count_records, detect_format, read_corpus
from featurelens.corpus.records import CorpusError, FieldMapping, Record, RowError

__all__ = [
    "DEFAULT_HOLDOUT_FRACTION",
    "CorpusError",
    "CorpusFormat",
    "FieldMapping",
    "Record",
    "RowError",
    "count_records",
    "detect_format",
    "held_out",
    "read_corpus",
]
