"""The trainer's S3 adapter against the session's real S3 (SeaweedFS): directory round trips under
the job layout, and a dataset that is not there is a permanent error."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from servicekit.artifacts import ArtifactStore
from trainer.adapters.s3_artifacts import S3Artifacts
from trainer.domain import DatasetUnavailableError, checkpoint_prefix
from tests.harness import IsolatedEnv


@pytest.fixture(scope="module")
async def artifacts(infra: IsolatedEnv) -> S3Artifacts:
    store = ArtifactStore(infra.s3.endpoint, infra.s3.access_key, infra.s3.secret_key,
                          f"tr-art-{uuid.uuid4().hex[:8]}-{infra.suffix}")
    await store.ensure_bucket()
    return S3Artifacts(store)


async def test_a_checkpoint_directory_goes_up_comes_back_whole_and_can_be_deleted(artifacts: S3Artifacts,
                                                                                  tmp_path: Path) -> None:
    src = tmp_path / "step-000002"
    (src / "nested").mkdir(parents=True)
    (src / "adapter_model.safetensors").write_bytes(b"\x00weights")
    (src / "nested" / "state.json").write_text('{"step": 2}')

    uri = await artifacts.upload_dir(src, checkpoint_prefix("job-x", src.name))
    assert uri == f"s3://{artifacts.store.bucket}/training/job-x/checkpoints/step-000002/"

    back = await artifacts.download_dir(uri, tmp_path / "back" / "step-000002")
    assert (back / "adapter_model.safetensors").read_bytes() == b"\x00weights"
    assert (back / "nested" / "state.json").read_text() == '{"step": 2}'

    await artifacts.delete_dir(uri)
    empty = await artifacts.download_dir(uri, tmp_path / "gone")
    assert not empty.exists()


async def test_a_dataset_that_is_not_there_cannot_be_trained_on(artifacts: S3Artifacts, tmp_path: Path) -> None:
    bucket = artifacts.store.bucket
    for uri in (f"s3://{bucket}/datasets/nope/train.jsonl", f"s3://no-such-bucket-{uuid.uuid4().hex[:6]}/t.jsonl",
                "/local/train.jsonl", "s3://bucket-only"):
        with pytest.raises(DatasetUnavailableError):
            await artifacts.download(uri, tmp_path / "train.jsonl")


async def test_a_dataset_is_downloaded_from_its_uri(artifacts: S3Artifacts, tmp_path: Path) -> None:
    await artifacts.store.put_bytes("datasets/d1/v1/train.jsonl", b'{"messages": []}\n')

    path = await artifacts.download(artifacts.store.uri("datasets/d1/v1/train.jsonl"), tmp_path / "d" / "train.jsonl")

    assert path.read_bytes() == b'{"messages": []}\n'
