"""A team store's artifacts in an S3 bucket (``artifacts: s3://BUCKET/PREFIX``: AWS S3,
MinIO, Ceph or anything speaking its API), through boto3, imported only then.

The bucket holds the same layout as a store folder: ``objects/ab/cdef...`` (code by
content), ``snapshots/<id>.json`` and ``runs/<run id>/`` (a finished run's logs and
outputs). Each machine works on a local cache of it (``<local store>/artifacts-cache``):

- an object or manifest is uploaded when first stored here, unless the bucket has it
  (so a teammate's submit of the same code uploads nothing), and fetched when this machine
  needs one it lacks;
- a run's files are written locally by whichever machine syncs it and uploaded before the
  run is recorded synced (a failed upload leaves it unsynced: the next command tries again);
  a machine that did not sync it fetches them once the run is synced.

Credentials and endpoint come from the AWS chain (``AWS_ACCESS_KEY_ID``..., profiles,
``AWS_ENDPOINT_URL`` for a non-AWS endpoint); nothing of them is written anywhere.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from runctl.errors import InputError, Refused, RunctlError, StoreUnreachable
from runctl.job import protocol
from runctl.store import private
from runctl.store.snapshot import ObjectStore

FETCHED = ".runctl-fetched"  # in a run's cached folder: its final files are here


def split_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (bucket, ``some/prefix/``)."""
    rest = url[len("s3://"):]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise InputError(f"artifacts {url}: write s3://BUCKET or s3://BUCKET/PREFIX")
    return bucket, (prefix.strip("/") + "/") if prefix.strip("/") else ""


class Bucket:
    """The few S3 calls the store makes, with boto3's errors as runctl's."""

    def __init__(self, url: str) -> None:
        import boto3

        self.url = url
        self.bucket, self.prefix = split_url(url)
        self.client = boto3.client("s3")

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

        try:
            yield
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            message = e.response.get("Error", {}).get("Message", "") or code
            where = f"artifacts {self.url}: {what}"
            if code in ("NoSuchBucket",):
                raise InputError(f"{where}: the bucket {self.bucket!r} does not exist; create it, or fix `artifacts:`") \
                    from None
            if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled"):
                raise Refused(f"{where}: refused ({code}: {message}); check the AWS credentials this user has") from None
            if code in ("SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"):
                raise StoreUnreachable(f"{where}: the object store is busy ({code}); try again") from None
            raise RunctlError(f"{where}: the object store refused the write ({code}: {message})") from None
        except NoCredentialsError:
            raise InputError(f"artifacts {self.url}: no AWS credentials (set AWS_ACCESS_KEY_ID and "
                             f"AWS_SECRET_ACCESS_KEY, or a profile)") from None
        except EndpointConnectionError as e:
            raise StoreUnreachable(f"artifacts {self.url}: the object store did not answer ({e}); try again") from None
        except BotoCoreError as e:
            raise StoreUnreachable(f"artifacts {self.url}: {e}; try again") from None

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        with self._errors(f"looking for {key}"):
            try:
                self.client.head_object(Bucket=self.bucket, Key=self.prefix + key)
                return True
            except ClientError as e:
                if str(e.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
                    return False
                raise

    def put(self, key: str, path: Path) -> None:
        with self._errors(f"storing {key}"), open(path, "rb") as f:
            self.client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=f)

    def get(self, key: str, dest: Path) -> bool:
        """Fetch ``key`` into ``dest`` (written aside, then renamed; 0600); False if absent."""
        from botocore.exceptions import ClientError

        private.makedirs(dest.parent)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
        with self._errors(f"fetching {key}"):
            try:
                body = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"]
            except ClientError as e:
                if str(e.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
                    return False
                raise
            try:
                with private.open_file(tmp) as out:
                    for chunk in body.iter_chunks(1 << 20):
                        out.write(chunk)
                os.replace(tmp, dest)
            finally:
                tmp.unlink(missing_ok=True)
        return True

    def keys(self, prefix: str) -> list[str]:
        out: list[str] = []
        with self._errors(f"listing {prefix}"):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                                Prefix=self.prefix + prefix):
                out += [obj["Key"][len(self.prefix):] for obj in page.get("Contents", [])]
        return out


class MirroredObjects(ObjectStore):
    """The object cache and manifests, kept here and in the bucket."""

    def __init__(self, cache_dir: Path, bucket: Bucket) -> None:
        super().__init__(cache_dir)
        self.bucket = bucket
        self._known: set[str] = set()  # digests the bucket has (checked or put by this process)

    def _key(self, digest: str) -> str:
        return f"objects/{protocol.object_relpath(digest)}"

    def _push(self, digest: str) -> str:
        if digest in self._known:
            return digest
        try:
            if not self.bucket.exists(self._key(digest)):
                self.bucket.put(self._key(digest), super().object_path(digest))
        except BaseException:
            # not in the bucket: drop it here too, so the next snapshot stores (and uploads) it again
            with contextlib.suppress(OSError):
                os.chmod(super().object_path(digest), 0o600)
                super().object_path(digest).unlink()
            raise
        self._known.add(digest)
        return digest

    def add_bytes(self, data: bytes) -> str:
        return self._push(super().add_bytes(data))

    def add_file(self, src: str | Path) -> str:
        return self._push(super().add_file(src))

    def object_path(self, digest: str) -> Path:
        path = super().object_path(digest)
        if not path.exists() and self.bucket.get(self._key(digest), path):
            os.chmod(path, 0o400)
            self._known.add(digest)
        return path

    def put_manifest(self, manifest: dict) -> str:
        snap_id = super().put_manifest(manifest)
        key = f"snapshots/{snap_id}.json"
        if not self.bucket.exists(key):
            self.bucket.put(key, self.manifests / f"{snap_id}.json")
        return snap_id

    def manifest(self, snap_id: str) -> dict:
        path = self.manifests / f"{snap_id}.json"
        if not path.exists():
            self.bucket.get(f"snapshots/{snap_id}.json", path)
        return super().manifest(snap_id)


def upload_run(bucket: Bucket, run_id: str, folder: Path) -> None:
    """A synced run's files into the bucket (then marked fetched here: they are final)."""
    if folder.is_dir():
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.is_symlink() and path.name != FETCHED and not path.name.endswith(".part"):
                bucket.put(f"runs/{run_id}/{path.relative_to(folder).as_posix()}", path)
    private.makedirs(folder)
    (folder / FETCHED).touch()


def fetch_run(bucket: Bucket, run_id: str, folder: Path) -> None:
    """A synced run's final files from the bucket, once, into this machine's cache."""
    for key in bucket.keys(f"runs/{run_id}/"):
        rel = key[len(f"runs/{run_id}/"):]
        parts = rel.split("/")
        if not rel or any(p in ("", ".", "..") for p in parts):
            continue  # (runctl never writes such keys; a bucket is shared, so they are not trusted)
        bucket.get(key, folder.joinpath(*parts))
    private.makedirs(folder)
    (folder / FETCHED).touch()

