"""Fixtures for the log-miner's use-case tests: fakes of its own ports."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from log_miner.domain.validation import Limits
from log_miner.metrics import MinerMetrics
from log_miner.service import BuildDataset, RecordRuns
from log_miner.service.build_dataset import BuildSettings
from tests.log_miner.unit.fakes import FakeFiles, FakeReader, FakeStore


@pytest.fixture
def metrics() -> MinerMetrics:
    return MinerMetrics(CollectorRegistry())


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def files() -> FakeFiles:
    return FakeFiles()


@pytest.fixture
def reader() -> FakeReader:
    return FakeReader()


@pytest.fixture
def record(store, metrics) -> RecordRuns:
    return RecordRuns(store, store, metrics, include_unrated=True)


@pytest.fixture
def build(store, files, reader, metrics) -> BuildDataset:
    return BuildDataset(store, files, reader, metrics, BuildSettings(limits=Limits(max_chars=4000), progress_every=2))
