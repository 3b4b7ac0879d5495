"""Where the files are written: the one seam between the export and its storage.

An `ObjectStore` holds whole objects by `/`-separated path. `put` is atomic: a reader sees
the previous object or the new one, never a part-written file. Two stores today:

- `LocalDirectory`: a directory on this machine (or a mounted volume). Each file is
  written to a hidden temporary file beside its final name (`.<name>.<random>.tmp`),
  flushed and fsync'ed, then renamed over the final name (`os.replace`, atomic on POSIX),
  and the directory is fsync'ed so the rename survives a power cut.
- `HttpObjectStore`: a minimal HTTP object store, as served by this destination's
  simulator; an object store's PUT of a whole object is atomic by construction.

        PUT  <base_url>/objects/<path>     body: the bytes; X-Content-SHA256: <hex>
                                           200 {"path", "size", "sha256"} (ETag: "<sha256>")
        GET  <base_url>/objects/<path>     200 the bytes | 404
        GET  <base_url>/objects?prefix=p   200 {"objects": [{"path", "size", "sha256"}]}

    Every request carries `Authorization: Bearer <token>`. Errors: 400 (bad path or
    digest), 401/403 (credentials), 413 (over 5 GiB), 429 with Retry-After and
    X-RateLimit-Limit / -Remaining / -Reset (seconds), 5xx. Bodies:
    `{"error": {"code", "message"}}`.

An S3 or GCS store would be a third class with these four methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import secrets
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

import httpx
import orjson

from switchyard.delivery.ratelimit import RateLimiter
from switchyard.destinations import http
from switchyard.destinations.file_export.spec import MAX_PART_BYTES
from switchyard.destinations.http import CONNECTION_LIMITS
from switchyard.errors import (
    DestinationConfigError,
    DestinationRefusedError,
    DestinationUnavailableError,
)


class ObjectStore(Protocol):
    async def check(self) -> None:
        """Raise unless the store is there and takes our writes (or credentials)."""
        ...

    async def put(self, path: str, data: bytes) -> None:
        """Store `data` at `path` atomically, replacing what was there."""
        ...

    async def get(self, path: str) -> bytes | None:
        """The object's bytes, or None when there is none."""
        ...

    async def list(self, prefix: str) -> dict[str, int]:
        """Every object whose path starts with `prefix`: path → size in bytes."""
        ...

    async def aclose(self) -> None: ...


# -- a local directory --------------------------------------------------------------------

# Errors a person must fix (permissions, a read-only mount, a file where a directory
# should be); anything else (EIO, ENOSPC, a stale NFS handle) may pass, so it is retried.
_FATAL_ERRNOS = frozenset(
    {
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.ENOENT,
        errno.ENAMETOOLONG,
    }
)


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_directories(root: Path, path: Path) -> None:
    """Create `path` below `root` level by level, making each new entry durable."""
    missing: list[Path] = []
    while path != root and not path.is_dir():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except FileExistsError:
            continue  # another writer made it first
        _fsync_directory(directory.parent)


def write_atomically(target: Path, data: bytes) -> None:
    """Write `data` to `target` so that no reader ever sees a partial file."""
    # Named per writer, so a retried attempt racing a stale one never shares a temp file;
    # O_EXCL with mode 0o666 lets the umask decide the final permissions.
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_directory(target.parent)


class LocalDirectory:
    def __init__(self, root: str, name: str) -> None:
        self._root = Path(root)
        self._name = name

    def _error(self, error: OSError, doing: str) -> Exception:
        message = f"{self._name}: cannot {doing} in {self._root}: {error.strerror or error}"
        if error.errno in _FATAL_ERRNOS:
            return DestinationConfigError(f"{message}; check the `directory` and its permissions")
        return DestinationUnavailableError(message)

    def _require_root(self) -> None:
        # The export's root is configuration: a typo must not quietly create a new tree.
        if not self._root.is_dir():
            raise DestinationConfigError(
                f"{self._name}: directory {self._root} does not exist or is not a directory"
            )

    def _check(self) -> None:
        self._require_root()
        try:
            probe = self._root / f".switchyard-preflight-{secrets.token_hex(6)}"
            write_atomically(probe, b"")
            probe.unlink()
        except OSError as error:
            raise self._error(error, "write") from error

    def _put(self, path: str, data: bytes) -> None:
        self._require_root()
        target = self._root / path
        try:
            _make_directories(self._root, target.parent)
            write_atomically(target, data)
        except OSError as error:
            raise self._error(error, f"write {path}") from error

    def _get(self, path: str) -> bytes | None:
        try:
            return (self._root / path).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise self._error(error, f"read {path}") from error

    def _list(self, prefix: str) -> dict[str, int]:
        base = self._root / prefix
        found: dict[str, int] = {}
        try:
            for directory, _, files in os.walk(base):
                for file in files:
                    if file.startswith("."):
                        continue  # a temporary file: not an object yet
                    path = Path(directory, file)
                    found[path.relative_to(self._root).as_posix()] = path.stat().st_size
        except OSError as error:
            raise self._error(error, f"list {prefix}") from error
        return found

    async def check(self) -> None:
        await asyncio.to_thread(self._check)

    async def put(self, path: str, data: bytes) -> None:
        await asyncio.to_thread(self._put, path, data)

    async def get(self, path: str) -> bytes | None:
        return await asyncio.to_thread(self._get, path)

    async def list(self, prefix: str) -> dict[str, int]:
        return await asyncio.to_thread(self._list, prefix)

    async def aclose(self) -> None:
        return None


# -- an HTTP object store -----------------------------------------------------------------


def _header_int(response: httpx.Response, name: str) -> int | None:
    value = response.headers.get(name, "").strip()
    return int(value) if value.isascii() and value.isdigit() else None


class HttpObjectStore:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        name: str,
        token_env: str,
        timeout: float,
        limiter: RateLimiter,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._base = base_url.rstrip("/") + "/objects"
        self._name = name
        self._token_env = token_env
        self._limiter = limiter
        self._http = httpx.AsyncClient(
            timeout=timeout,
            transport=transport,
            headers={"Authorization": f"Bearer {token}"},
            limits=CONNECTION_LIMITS,
        )

    def _url(self, path: str) -> str:
        return f"{self._base}/{quote(path, safe='/')}"

    async def _request(
        self,
        method: str,
        url: str,
        *,
        content: bytes | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        missing_ok: bool = False,
    ) -> httpx.Response:
        await self._limiter.acquire()
        response = await http.request(
            self._http,
            method,
            url,
            where=f"{self._name}: {method} {httpx.URL(url).path}",
            content=content,
            params=params,
            headers=headers,
        )
        self._limiter.observe(
            _header_int(response, "X-RateLimit-Remaining"),
            _header_int(response, "X-RateLimit-Reset"),
        )
        status = response.status_code
        if 200 <= status < 300 or (missing_ok and status == 404):
            return response
        raise http.status_error(
            response,
            self._limiter,
            f"{self._name}: {method} {response.request.url.path}",
            response.text[:300],
            f"the token in ${self._token_env}",
        )

    async def check(self) -> None:
        # Any answer but a refusal will do: the object is not expected to exist.
        await self._request("GET", self._url(".switchyard-preflight"), missing_ok=True)

    async def put(self, path: str, data: bytes) -> None:
        if len(data) > MAX_PART_BYTES:
            raise DestinationRefusedError(
                f"{self._name}: {path} is {len(data)} bytes, over the {MAX_PART_BYTES} a "
                "single PUT may carry; lower the contract's batch_size",
                413,
            )
        headers = {
            "Content-Type": "application/octet-stream",
            "X-Content-SHA256": hashlib.sha256(data).hexdigest(),
        }
        await self._request("PUT", self._url(path), content=data, headers=headers)

    async def get(self, path: str) -> bytes | None:
        response = await self._request("GET", self._url(path), missing_ok=True)
        return None if response.status_code == 404 else response.content

    async def list(self, prefix: str) -> dict[str, int]:
        response = await self._request("GET", self._base, params={"prefix": prefix})
        try:
            objects = orjson.loads(response.content)["objects"]
            return {str(o["path"]): int(o["size"]) for o in objects}
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise DestinationUnavailableError(
                f"{self._name}: the object listing is not the expected JSON: {response.text[:200]}"
            ) from error

    async def aclose(self) -> None:
        await self._http.aclose()
