"""The MongoDB + S3 backend of ``ml-dash serve``: its settings, and opening it.

``MongoSettings`` is read from the command line and the environment
(``ML_DASH_MONGO_URI``, ``ML_DASH_MONGO_DB``, ``ML_DASH_S3``, ``ML_DASH_S3_ENDPOINT``);
nothing here imports pymongo or boto3 until a store or a token store is opened, so the
folder backend runs without the ``mongo`` extra.

Every piece of state (experiments, metric points, tokens) lives in the database and the
bucket, so several server processes may share them. They must then agree on the chunk
size: :func:`check_backend` records it in the database and refuses another.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import unquote

from ..errors import InvalidValueError, StorageError

if TYPE_CHECKING:
    from ..stores.mongo import MongoStore
    from .mongo_auth import MongoTokenStore

ENV_URI = "ML_DASH_MONGO_URI"
ENV_DATABASE = "ML_DASH_MONGO_DB"
ENV_S3 = "ML_DASH_S3"
ENV_S3_ENDPOINT = "ML_DASH_S3_ENDPOINT"
DEFAULT_DATABASE = "ml_dash"
DEFAULT_CHUNK_SIZE = 10_000
BUCKET_SIZE = 1000  # MongoStore's points per hot bucket document
MULTI_SERVER = (
    "the MongoDB backend is multi-server: several `ml-dash serve` processes may share one database and bucket"
)
LAYOUT_ID = "metric-layout"
_BAD_DATABASE = re.compile(r'[/\\. "$*<>:|?\x00]')
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_USERINFO = re.compile(r"^(mongodb(?:\+srv)?://)[^@/]*@")


def _database_in_uri(uri: str) -> str | None:
    """The database named in the URI path (``mongodb://host/NAME?...``), if any."""
    rest = uri.split("://", 1)[1]
    _hosts, slash, tail = rest.partition("/")
    name = unquote(tail.split("?", 1)[0]) if slash else ""
    return name or None


def parse_s3(spec: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix")``; InvalidValueError otherwise."""
    if not spec.startswith("s3://"):
        raise InvalidValueError(f"--s3 {spec!r}: expected s3://BUCKET[/PREFIX]")
    bucket, _, prefix = spec[len("s3://") :].partition("/")
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise InvalidValueError(
            f"--s3 {spec!r}: {bucket!r} is not a valid S3 bucket name (3-63 lowercase letters, digits, '.', '-')"
        )
    return bucket, prefix.strip("/")


def check_chunk_size(chunk_size: int) -> int:
    """``chunk_size`` if MongoStore can use it with its 1,000-point buckets; InvalidValueError otherwise."""
    if chunk_size < 1 or (chunk_size > BUCKET_SIZE and chunk_size % BUCKET_SIZE):
        raise InvalidValueError(
            f"--chunk-size {chunk_size}: must be 1..{BUCKET_SIZE} or a multiple of {BUCKET_SIZE}"
        )
    return chunk_size


def redact(uri: str) -> str:
    """The URI without its user name and password (for what the server prints)."""
    return _USERINFO.sub(r"\1***@", uri)


@dataclass(frozen=True)
class MongoSettings:
    """Where the MongoDB backend keeps everything."""

    uri: str
    database: str = DEFAULT_DATABASE
    bucket: str | None = None
    key_prefix: str = ""
    endpoint: str | None = None
    chunk_size: int = DEFAULT_CHUNK_SIZE
    region: str | None = None

    @classmethod
    def from_options(
        cls,
        uri: str | None = None,
        database: str | None = None,
        s3: str | None = None,
        endpoint: str | None = None,
        chunk_size: int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> MongoSettings | None:
        """The settings from command-line values, each falling back to its ``ML_DASH_*`` variable.

        None when no MongoDB URI is given anywhere (the folder backend); InvalidValueError
        for a malformed value, or S3 options without a MongoDB URI.
        """
        env = os.environ if env is None else env
        uri = uri or env.get(ENV_URI) or None
        s3 = s3 or env.get(ENV_S3) or None
        endpoint = endpoint or env.get(ENV_S3_ENDPOINT) or None
        if uri is None:
            if s3 or endpoint or chunk_size is not None:
                raise InvalidValueError(f"--s3, --s3-endpoint and --chunk-size need --mongo (or ${ENV_URI})")
            return None
        if not uri.startswith(("mongodb://", "mongodb+srv://")):
            raise InvalidValueError(f"--mongo: expected a mongodb:// or mongodb+srv:// URI, got {redact(uri)!r}")
        name = database or env.get(ENV_DATABASE) or _database_in_uri(uri) or DEFAULT_DATABASE
        if _BAD_DATABASE.search(name) or len(name.encode()) > 63:
            raise InvalidValueError(f"--mongo-db {name!r} is not a usable MongoDB database name")
        bucket, key_prefix = parse_s3(s3) if s3 else (None, "")
        if endpoint is not None and bucket is None:
            raise InvalidValueError("--s3-endpoint needs --s3 s3://BUCKET[/PREFIX]")
        size = check_chunk_size(DEFAULT_CHUNK_SIZE if chunk_size is None else chunk_size)
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None
        return cls(uri, name, bucket, key_prefix, endpoint, size, region)

    def describe(self) -> str:
        """One line naming the database and the bucket (no credentials)."""
        where = f"MongoDB {redact(self.uri)} database {self.database!r}"
        if self.bucket is None:
            return where + ", no S3 bucket (every metric point stays in MongoDB)"
        target = f"s3://{self.bucket}/{self.key_prefix}" if self.key_prefix else f"s3://{self.bucket}"
        via = f" via {self.endpoint}" if self.endpoint else ""
        return f"{where}, cold metric chunks of {self.chunk_size} points in {target}{via}"

    def open_store(self) -> MongoStore:
        """A MongoStore on these settings (connects lazily; needs the ``mongo`` extra)."""
        try:
            from ..stores.mongo import MongoStore
        except ImportError as exc:
            raise _without_extra(exc) from exc
        return MongoStore(
            self.uri,
            self.database,
            s3_bucket=self.bucket,
            s3_prefix=self.key_prefix,
            s3_endpoint=self.endpoint,
            chunk_size=self.chunk_size,
            s3_region=self.region,
        )

    def open_tokens(self, store: MongoStore | None = None) -> MongoTokenStore:
        """The token store in this database (sharing ``store``'s connections when given)."""
        try:
            from .mongo_auth import MongoTokenStore
        except ImportError as exc:
            raise _without_extra(exc) from exc
        if store is not None:
            return MongoTokenStore(store.db)
        return MongoTokenStore.connect(self.uri, self.database)


class BackendCheck(NamedTuple):
    """What :func:`check_backend` found."""

    warnings: list[str]
    reachable: bool  # MongoDB answered


def check_backend(settings: MongoSettings, store: MongoStore) -> BackendCheck:
    """Look at MongoDB and the bucket before serving; returns warnings to print.

    An unreachable MongoDB or bucket is only a warning (requests answer 503, chunk
    moves wait). A database whose recorded chunk size differs from ``settings``
    raises InvalidValueError: servers sharing a database must split streams alike.
    """
    from pymongo.errors import DuplicateKeyError, PyMongoError

    warnings: list[str] = []
    reachable = True
    layout: dict[str, Any] = {"_id": LAYOUT_ID, "chunkSize": settings.chunk_size,
                              "bucketSize": store.metric_tier.bucket_size}
    try:
        collection = store.db["settings"]
        try:
            collection.insert_one(dict(layout))
        except DuplicateKeyError:
            found = collection.find_one({"_id": LAYOUT_ID}) or {}
            if (found.get("chunkSize"), found.get("bucketSize")) != (layout["chunkSize"], layout["bucketSize"]):
                raise InvalidValueError(
                    f"database {settings.database!r} holds metric chunks of {found.get('chunkSize')} points "
                    f"(buckets of {found.get('bucketSize')}); start every server on it with "
                    f"--chunk-size {found.get('chunkSize')}"
                ) from None
    except PyMongoError as exc:
        reachable = False
        warnings.append(f"warning: cannot reach MongoDB now ({type(exc).__name__}); requests answer 503 until it "
                        "answers, and the chunk size is not checked against the database")
    chunks = store.metric_tier.chunks
    if chunks is not None:
        from ..stores.s3_chunks import S3_ERRORS

        try:
            chunks.client.head_bucket(Bucket=chunks.bucket)
        except S3_ERRORS as exc:
            warnings.append(f"warning: S3 bucket {chunks.bucket!r} cannot be used now ({exc}); full metric chunks "
                            "stay in MongoDB until it can take them")
    return BackendCheck(warnings, reachable)


def _without_extra(exc: ImportError) -> StorageError:
    return StorageError(f"the MongoDB backend needs pymongo and boto3: pip install 'ml-dash[mongo]' ({exc})")


def open_backend(settings: MongoSettings, auth: bool) -> tuple[MongoStore, MongoTokenStore | None]:
    """The store and (with ``auth``) the token store of ``settings``; StorageError without the extra."""
    store = settings.open_store()
    return store, settings.open_tokens(store) if auth else None
