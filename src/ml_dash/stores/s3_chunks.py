"""The cold tier: one S3 object per full chunk of a metric, read back with ranged GETs.

An object is a run of independently compressed frames (``chunk_codec``) of
``frame_size`` points each; the byte offset of every frame is kept in the chunk's
manifest document in MongoDB, so reading 1,000 points from a 10,000-point chunk fetches
only the one or two frames that hold them (an HTTP ``Range`` request), not the object.

Object keys are deterministic (``<s3_prefix><experiment prefix>/<metric>/chunk-<first
index, 12 digits>``), so writing the same chunk twice overwrites it with the same bytes.
"""

from __future__ import annotations

from typing import Any

import boto3  # type: ignore[import-untyped]  # boto3 ships no type hints
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from ..errors import StorageError
from . import chunk_codec

S3_ERRORS = (BotoCoreError, ClientError)


def make_s3_client(
    endpoint: str | None,
    region: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
    timeout: float = 5.0,
) -> Any:
    """A boto3 S3 client with short timeouts and two attempts, so an outage is seen fast.

    Without keys, boto3's usual chain (``AWS_*`` variables, config files, roles) applies.
    """
    config = Config(
        connect_timeout=timeout,
        read_timeout=max(timeout, 30.0),
        retries={"max_attempts": 2, "mode": "standard"},
        s3={"addressing_style": "path"} if endpoint else None,
    )
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=region or "us-east-1",
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=config,
    )


class ChunkObjects:
    """Writes and reads chunk objects in one bucket under one key prefix."""

    def __init__(self, client: Any, bucket: str, key_prefix: str = "", frame_size: int = 1000) -> None:
        self.client = client
        self.bucket = bucket
        self.key_prefix = key_prefix if not key_prefix or key_prefix.endswith("/") else key_prefix + "/"
        self.frame_size = frame_size

    def key(self, prefix: str, metric: str, first: int) -> str:
        """The deterministic object key of the chunk starting at index ``first``."""
        return f"{self.key_prefix}{prefix}/{metric}/chunk-{first:012d}"

    def put(self, key: str, rows: list[dict[str, Any]]) -> list[int]:
        """Store ``rows`` (point data in index order) as one object; return frame offsets.

        The offsets list has one entry per frame plus the object size at the end.
        Raises the boto3/botocore error when S3 cannot take the object.
        """
        frames = [chunk_codec.encode_frame(rows[i : i + self.frame_size]) for i in range(0, len(rows), self.frame_size)]
        offsets = [0]
        for frame in frames:
            offsets.append(offsets[-1] + len(frame))
        self.client.put_object(
            Bucket=self.bucket, Key=key, Body=b"".join(frames), ContentType="application/octet-stream"
        )
        return offsets

    def read(self, manifest: dict[str, Any], start: int, end: int) -> list[dict[str, Any]]:
        """Points ``start .. end - 1`` (clipped to the chunk) as ``{"index", "data"}`` dicts.

        Fetches only the frames that hold them, in one ranged GET. Raises StorageError
        when the object cannot be read.
        """
        first, count = int(manifest["first"]), int(manifest["count"])
        frame_size = int(manifest["frameSize"])
        offsets = [int(o) for o in manifest["offsets"]]
        start, end = max(start, first), min(end, first + count)
        if start >= end:
            return []
        lo_frame = (start - first) // frame_size
        hi_frame = (end - 1 - first) // frame_size
        lo_byte, hi_byte = offsets[lo_frame], offsets[hi_frame + 1]
        try:
            ranged = f"bytes={lo_byte}-{hi_byte - 1}"
            body = self.client.get_object(Bucket=self.bucket, Key=manifest["key"], Range=ranged)["Body"].read()
        except S3_ERRORS as exc:
            raise StorageError(f"cannot read cold chunk s3://{self.bucket}/{manifest['key']}: {exc}") from exc
        if len(body) != hi_byte - lo_byte:
            raise StorageError(
                f"cold chunk s3://{self.bucket}/{manifest['key']}: asked for {hi_byte - lo_byte} bytes, got {len(body)}"
            )
        out: list[dict[str, Any]] = []
        for number in range(lo_frame, hi_frame + 1):
            frame = body[offsets[number] - lo_byte : offsets[number + 1] - lo_byte]
            index = first + number * frame_size
            for row in chunk_codec.decode_frame(frame):
                if start <= index < end:
                    out.append({"index": index, "data": row})
                index += 1
        return out
