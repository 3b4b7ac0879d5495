"""File export: each run's changes as CSV or Parquet files with a manifest.

The files go to a local (or mounted) directory, or to an HTTP object store (`PUT`/`GET`
of whole objects), so the same client can be pointed at the local simulator. Layout,
columns and the manifest are described in `client.py`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from switchyard.destinations.spec import Capability, Category, DestinationConfig, DestinationSpec

Format = Literal["csv", "parquet"]
Compression = Literal["none", "gzip", "zstd", "snappy"]

_COMPRESSIONS: dict[str, tuple[str, ...]] = {
    "csv": ("none", "gzip"),
    "parquet": ("zstd", "snappy", "gzip", "none"),
}


class FileExportConfig(DestinationConfig):
    kind: Literal["file_export"] = "file_export"
    # Exactly one of the two: a directory on this machine, or an HTTP object store's root.
    directory: str | None = Field(default=None, min_length=1)
    base_url: str | None = Field(default=None, pattern=r"^https?://")
    format: Format = "parquet"
    # Defaults to the first of the format's choices: zstd for Parquet, none for CSV.
    compression: Compression | None = None
    # Name of the environment variable holding the object store's bearer token (base_url
    # only): never the token itself.
    token_env: str = Field(default="SWITCHYARD_OBJECT_STORE_TOKEN", pattern=r"^[A-Z_][A-Z0-9_]*$")
    timeout_seconds: float = Field(default=60, gt=0)

    @model_validator(mode="after")
    def _one_target_and_a_fitting_compression(self) -> FileExportConfig:
        if (self.directory is None) == (self.base_url is None):
            raise ValueError("set exactly one of `directory` or `base_url`")
        allowed = _COMPRESSIONS[self.format]
        if self.compression is not None and self.compression not in allowed:
            raise ValueError(
                f"compression {self.compression!r} does not apply to {self.format} "
                f"(choose one of: {', '.join(allowed)})"
            )
        return self

    @property
    def codec(self) -> str:
        """The compression in effect."""
        return self.compression or _COMPRESSIONS[self.format][0]


# A part is one file per batch, built in memory: 50,000 rows of a few dozen fields is some
# tens of MB. (Below the catalog's ceiling of 100,000 on any contract, so a contract asking
# for more is refused naming this destination's limit.) A single object-store PUT is
# capped at 5 GiB (S3's PutObject limit).
MAX_BATCH_SIZE = 50_000
MAX_PART_BYTES = 5 * 1024**3

SPEC = DestinationSpec(
    kind="file_export",
    title="File export (CSV / Parquet)",
    category=Category.FILES,
    config=FileExportConfig,
    identifiers=frozenset(),
    max_batch_size=MAX_BATCH_SIZE,
    max_payload_bytes=MAX_PART_BYTES,
    rate_limit=None,
    operations=frozenset({Capability.UPSERT, Capability.REMOVE}),
    membership=(
        "each run's directory holds that run's changes (an `op` column of upsert or remove "
        "per key); a full resync writes the whole audience"
    ),
    set_if_empty=False,
    client="switchyard.destinations.file_export.client:FileExportClient",
    simulator="switchyard.destinations.file_export.simulator:create_app",
    example_config=lambda base_url: FileExportConfig(base_url=base_url),
)
