"""One batch as one part file, CSV or Parquet, and reading a part back.

Columns: `op` (upsert or remove), the contract's identifier (the normalised key), then
every field Switchyard sends, in contract order. A remove has nulls in every field, and so
does an upsert for a field it has no value for (a file has no "left out").

Types follow the contract's field types:

    contract type            Parquet                     CSV text
    string, email, phone     string                      as is
    integer                  int64                       decimal digits
    number                   double                      Python's shortest repr (1.5, 1e+20)
    boolean                  bool                        true / false
    timestamp                timestamp[us, tz=UTC]       ISO 8601 in UTC: 2024-05-01T12:00:00Z
    date                     date32                      2024-05-01
    null                     null                        empty field

Parquet timestamps are real timestamps (not text) so readers filter and sort them as such.
CSV follows RFC 4180 (comma, double-quote quoting, CRLF line ends), UTF-8 without a BOM,
with a header row; an empty field is a null (CSV cannot tell null from an empty string).

Encoding is deterministic (gzip without a timestamp, Parquet from the same library
version), so a batch re-sent after a crash rewrites its part byte for byte.
"""

from __future__ import annotations

import builtins
import csv
import gzip
import hashlib
import io
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from switchyard.catalog.models import Contract, TraitType
from switchyard.errors import ContractMismatchError
from switchyard.pipeline.checkpoints import Batch

OP_COLUMN = "op"

_ARROW_TYPES: dict[TraitType, pa.DataType] = {
    TraitType.STRING: pa.string(),
    TraitType.EMAIL: pa.string(),
    TraitType.PHONE: pa.string(),
    TraitType.INTEGER: pa.int64(),
    TraitType.NUMBER: pa.float64(),
    TraitType.BOOLEAN: pa.bool_(),
    TraitType.TIMESTAMP: pa.timestamp("us", tz="UTC"),
    TraitType.DATE: pa.date32(),
}


@dataclass(frozen=True)
class Column:
    name: str
    type: TraitType
    nullable: bool = True


def columns_for(contract: Contract) -> list[Column]:
    return [
        Column(OP_COLUMN, TraitType.STRING, nullable=False),
        Column(contract.identifier.name, TraitType.STRING, nullable=False),
        *(Column(m.name, m.type) for m in contract.sent_fields),
    ]


def describe(columns: Sequence[Column]) -> list[dict[str, str]]:
    """The columns as the manifest lists them: name and contract type (see the table above)."""
    return [{"name": c.name, "type": c.type.value} for c in columns]


@dataclass(frozen=True)
class PartStats:
    """What the manifest says about one part."""

    file: str
    rows: int
    upserts: int
    removes: int
    bytes: int
    sha256: str

    # `bytes` above is the part's size; these methods mean the type.
    def to_json(self) -> builtins.bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: builtins.bytes) -> PartStats:
        return cls(**orjson.loads(data))


# -- typed values ---------------------------------------------------------------------------


def _string(value: object) -> object:
    if isinstance(value, str):
        return value
    raise TypeError


def _integer(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    # Arrow would silently truncate 1.5 to 1.
    raise TypeError


def _number(value: object) -> object:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise TypeError


def _boolean(value: object) -> object:
    if isinstance(value, bool):
        return value
    raise TypeError


def _timestamp(value: object) -> object:
    if not isinstance(value, str):
        raise TypeError
    moment = datetime.fromisoformat(value)
    # The warehouse renders UTC; a value without an offset is taken to be UTC too.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _date(value: object) -> object:
    if not isinstance(value, str):
        raise TypeError
    return date.fromisoformat(value)


_CONVERTERS: dict[TraitType, Callable[[object], object]] = {
    TraitType.STRING: _string,
    TraitType.EMAIL: _string,
    TraitType.PHONE: _string,
    TraitType.INTEGER: _integer,
    TraitType.NUMBER: _number,
    TraitType.BOOLEAN: _boolean,
    TraitType.TIMESTAMP: _timestamp,
    TraitType.DATE: _date,
}


def typed_columns(batch: Batch, columns: Sequence[Column]) -> list[list[Any]]:
    """The batch column by column, each value converted to its contract type.

    The warehouse already cast every value to its type, so a value that does not convert
    means the contract and the rendered payload disagree: nothing is written.
    """
    ops: list[Any] = [o.op for o in batch.operations]
    keys: list[Any] = [o.key for o in batch.operations]
    fields = columns[2:]
    values: list[list[Any]] = [[] for _ in fields]
    for operation in batch.operations:
        payload = orjson.loads(operation.fields) if operation.fields else {}
        for column, out in zip(fields, values, strict=True):
            value = payload.get(column.name)
            if value is None:
                out.append(None)
                continue
            try:
                out.append(_CONVERTERS[column.type](value))
            except (TypeError, ValueError):
                raise ContractMismatchError(
                    f"file export: field {column.name!r} of {operation.key!r} is "
                    f"{value!r}, not of type {column.type.value}"
                ) from None
    return [ops, keys, *values]


# -- encoding -------------------------------------------------------------------------------


def _csv_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int | float):
        return repr(value)
    return str(value)


def encode_csv(columns: Sequence[Column], data: Sequence[Sequence[Any]], codec: str) -> bytes:
    text = io.StringIO(newline="")
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow([c.name for c in columns])
    writer.writerows([_csv_text(v) for v in row] for row in zip(*data, strict=True))
    raw = text.getvalue().encode()
    # mtime=0: the same rows compress to the same bytes on every attempt.
    return gzip.compress(raw, mtime=0) if codec == "gzip" else raw


def encode_parquet(columns: Sequence[Column], data: Sequence[Sequence[Any]], codec: str) -> bytes:
    schema = pa.schema(
        [pa.field(c.name, _ARROW_TYPES[c.type], nullable=c.nullable) for c in columns]
    )
    arrays = [pa.array(values, type=field.type) for values, field in zip(data, schema, strict=True)]
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_arrays(arrays, schema=schema), sink, compression=codec)
    return bytes(sink.getvalue().to_pybytes())


def encode_part(
    batch: Batch, columns: Sequence[Column], name: str, format: str, codec: str
) -> tuple[bytes, PartStats]:
    data = typed_columns(batch, columns)
    body = (encode_csv if format == "csv" else encode_parquet)(columns, data, codec)
    removes = sum(1 for o in batch.operations if o.op == "remove")
    stats = PartStats(
        file=name,
        rows=len(batch.operations),
        upserts=len(batch.operations) - removes,
        removes=removes,
        bytes=len(body),
        sha256=hashlib.sha256(body).hexdigest(),
    )
    return body, stats


# -- reading back ---------------------------------------------------------------------------


def decode_part(name: str, data: bytes) -> list[dict[str, Any]]:
    """The rows of a part, column name → value (CSV: text, empty → None).

    Raises ValueError when the bytes are not a readable part of the kind its name says.
    """
    try:
        if name.endswith(".parquet"):
            rows: list[dict[str, Any]] = pq.read_table(pa.BufferReader(data)).to_pylist()
            return rows
        text = (gzip.decompress(data) if name.endswith(".gz") else data).decode()
        reader = csv.DictReader(io.StringIO(text, newline=""))
        return [{k: (v if v != "" else None) for k, v in row.items()} for row in reader]
    except (pa.ArrowException, OSError, EOFError, UnicodeDecodeError, csv.Error) as error:
        raise ValueError(f"{name} is not a readable part: {error}") from error
