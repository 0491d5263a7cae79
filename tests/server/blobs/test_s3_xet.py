"""The default-client (Xet) tests of tests/server/xet, run again on `haven serve --blob-store
s3://...` (moto's S3 server, see conftest): xorbs, shards and LFS objects live in the bucket. All but
transformers' push_to_hub / from_pretrained, which takes the same storage path as upload_folder."""

from __future__ import annotations

import pytest

from server.xet import test_refusals as refusals
from server.xet import test_xet_client as xet_tests


@pytest.fixture(scope="module")
def xet_hub(hub_server):
    """Their hub is this folder's S3 hub."""
    return hub_server


test_default_client_uploads_downloads_and_dedups = xet_tests.test_default_client_uploads_downloads_and_dedups
test_lfs_uploads_keep_working_without_xet_headers = xet_tests.test_lfs_uploads_keep_working_without_xet_headers
test_git_clone_gets_the_bytes_of_xet_uploads = xet_tests.test_git_clone_gets_the_bytes_of_xet_uploads
# A xorb may hold chunks of other repositories' files, so a reconstruction's fetch URLs must sign the
# exact byte range on S3 too: Haven's own range-signed URLs, never a presigned URL to the whole xorb.
alice = refusals.alice
test_expired_or_tampered_tokens_and_urls = refusals.test_expired_or_tampered_tokens_and_urls


def test_xet_bytes_went_to_the_bucket(hub_server):
    """After the uploads above: xorbs and shards are objects in the bucket, none are local files."""
    import boto3

    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=hub_server.bucket, Prefix="hub/xet/")
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    assert any(k.startswith("hub/xet/xorbs/") for k in keys) and any(k.startswith("hub/xet/shards/") for k in keys)
    local = hub_server.data_dir / "xet"
    assert not local.exists() or not [p for p in local.rglob("*") if p.is_file()]
