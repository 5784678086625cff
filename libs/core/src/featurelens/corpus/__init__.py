"""Reading document corpora (JSONL, CSV, Parquet) into validated `Record`s."""

from featurelens.corpus.reader import CorpusFormat, count_records, detect_format, read_corpus
from featurelens.corpus.records import CorpusError, FieldMapping, Record, RowError

__all__ = [
    "CorpusError",
    "CorpusFormat",
    "FieldMapping",
    "Record",
    "RowError",
    "count_records",
    "detect_format",
    "read_corpus",
]
