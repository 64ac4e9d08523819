"""Corpus importers, one module per format, all behind `ports.CorpusImporter`."""

from __future__ import annotations

from typing import Any

from ..domain.corpus import MalformedRecordError
from ..ports import CorpusImporter
from .alpaca import AlpacaImporter
from .bfcl import BfclImporter
from .openai_messages import OpenAIMessagesImporter
from .sharegpt import ShareGPTImporter

IMPORTERS: dict[str, CorpusImporter] = {
    i.format: i for i in (BfclImporter(), OpenAIMessagesImporter(), ShareGPTImporter(), AlpacaImporter())
}


def detect(record: Any) -> CorpusImporter:
    """The importer whose format the record looks like (the first record decides for a file)."""
    if isinstance(record, dict):
        for importer in IMPORTERS.values():
            if importer.accepts(record):
                return importer
    raise MalformedRecordError("record matches no known corpus format (openai, sharegpt, alpaca, bfcl)")
