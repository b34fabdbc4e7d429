"""Resumable, verified downloads and the manifest of what was fetched.

``baselens download DATASET`` (plans in :mod:`baselens.data.datasets`) is built on two
pieces defined here:

* :func:`fetch` — one URL to one file, on the standard library (``urllib``). It writes to
  ``<dest>.part``, resumes a partial ``.part`` with an HTTP ``Range: bytes=<n>-`` request
  (``If-Range`` guards against the file having changed upstream; a ``200`` answer to a
  range request restarts from byte 0, a ``206`` must start exactly at ``n``), checks the
  length against ``Content-Length`` / the ``Content-Range`` total / the published size and
  the checksum when one is known (sha256, md5, or an S3 ETag that is a plain MD5), and
  only then renames ``.part`` to ``dest`` with :func:`os.replace` (atomic on one file
  system). A ``.part`` is never read as a finished file. Connection errors, truncated
  bodies (``IncompleteRead``, fewer bytes than announced), timeouts, ``408``, ``429`` and
  ``5xx`` are retried with exponential backoff, ``backoff · 2^k`` seconds (capped at 60 s,
  ``Retry-After`` honoured); other ``4xx`` answers fail at once with the URL, the status
  and what to do.
* :class:`Manifest` / :class:`Downloader` — ``DIR/manifest.json`` (written atomically,
  at most every two seconds while files complete and at the end) records per file the URL,
  local path, size, the sha256 computed here, the published checksum if any and whether it
  was verified, and when. A re-run skips every file whose size (and sha256, recomputed when
  the modification time changed) still matches its manifest entry, without a request.

``BASELENS_OFFLINE=1`` (set by the test suite) refuses every URL that is not on the
loopback (127.0.0.1, localhost, ::1) before any request is made; the tests serve fixture
trees from a local HTTP server.

Mirrors: ``--base-url M`` (or ``BASELENS_MIRROR``) maps every upstream URL
``https://HOST/PATH`` to ``M/HOST/PATH`` — the layout ``wget --force-directories``
writes, so a mirror is a copy of the upstream trees under their host names
(:func:`mirror_url`).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

from baselens._io import write_json_atomic
from baselens._network import LOOPBACK as _LOOPBACK
from baselens._network import offline

__all__ = [
    "DownloadError",
    "FetchResult",
    "FileSpec",
    "Manifest",
    "Downloader",
    "fetch",
    "head",
    "mirror_url",
    "check_url_allowed",
    "human_bytes",
]

_CHUNK = 1 << 20
_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
USER_AGENT = "baselens-download/1 (+https://github.com/; python-urllib)"


class DownloadError(RuntimeError):
    """A file could not be downloaded or verified (the message names the URL and what to do)."""


# ----------------------------------------------------------------------------- helpers


def human_bytes(n: float | None) -> str:
    """``1536`` → ``"1.5 KB"`` (powers of 1024, one decimal)."""
    if n is None:
        return "?"
    n = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover


def mirror_url(url: str, base: str | None) -> str:
    """Map ``https://HOST/PATH?Q`` to ``BASE/HOST/PATH?Q`` (identity when ``base`` is empty)."""
    if not base:
        return url
    p = urllib.parse.urlsplit(url)
    out = base.rstrip("/") + "/" + p.netloc + p.path
    return out + ("?" + p.query if p.query else "")


def check_url_allowed(url: str) -> None:
    """Raise :class:`DownloadError` for a non-loopback URL while ``BASELENS_OFFLINE`` is set
    (the offline switch is :func:`baselens._network.offline`)."""
    if not offline():
        return
    host = urllib.parse.urlsplit(url).hostname
    if host in _LOOPBACK:
        return
    raise DownloadError(
        f"{url}: BASELENS_OFFLINE is set, so only loopback URLs (127.0.0.1, localhost) may be "
        "fetched. Unset BASELENS_OFFLINE on a connected machine, or serve a mirror locally "
        "and pass --base-url http://127.0.0.1:PORT (layout: <mirror>/<host>/<path>).")


def _hash_file(path: Path, algos: Iterable[str] = ("sha256",)) -> dict[str, str]:
    hs = {a: hashlib.new(a) for a in algos}
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            for h in hs.values():
                h.update(chunk)
    return {a: h.hexdigest() for a, h in hs.items()}


def _etag_md5(etag: str | None, headers=None) -> str | None:
    """An S3 ETag is the object's MD5 unless the upload was multipart (``"<hex>-<n>"``) or
    the object is encrypted with SSE-KMS / SSE-C (AWS S3 docs, "Checking object integrity");
    a weak ETag (``W/…``) is never a content hash."""
    if not etag:
        return None
    if headers is not None and (
            str(headers.get("x-amz-server-side-encryption", "")).lower() == "aws:kms"
            or headers.get("x-amz-server-side-encryption-customer-algorithm")):
        return None
    e = etag.strip()
    if e.startswith("W/"):
        return None
    e = e.strip('"').lower()
    if len(e) == 32 and all(c in "0123456789abcdef" for c in e):
        return e
    return None


def _content_range(value: str | None) -> tuple[int, int | None, int | None] | None:
    """``"bytes 100-199/1000"`` → (100, 199, 1000); ``"bytes */1000"`` → (-1, None, 1000)."""
    if not value:
        return None
    try:
        unit, rest = value.strip().split(" ", 1)
        rng, total = rest.split("/", 1)
        tot = None if total.strip() == "*" else int(total)
        if rng.strip() == "*":
            return -1, None, tot
        a, b = rng.split("-", 1)
        return int(a), int(b), tot
    except ValueError:
        return None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _retry_after(headers) -> float | None:
    if headers is None:
        return None
    v = headers.get("Retry-After")
    try:
        return float(v) if v is not None else None
    except ValueError:
        return None


_HINT_4XX = {
    401: "the server wants credentials; these datasets are public, so the URL is probably wrong",
    403: "access denied — on S3 this is also what a missing key returns; check the dataset "
         "id, source, batch and plate names (and --base-url)",
    404: "the file is not on the server; check the dataset id, source, batch and plate names "
         "(and --base-url)",
    416: "the server refused the byte range; delete the .part file and re-run",
}


# ----------------------------------------------------------------------------- fetch


@dataclass
class FetchResult:
    """Outcome of :func:`fetch`.

    status : ``"downloaded"`` (from byte 0), ``"resumed"`` (continued a ``.part``) or
        ``"skipped"`` (``dest`` already complete; no request made).
    published : checksums announced by the caller or the server (``sha256``, ``md5``).
    verified : whether a published checksum was compared and matched.
    """

    url: str
    path: Path
    size: int
    sha256: str
    status: str
    published: dict = field(default_factory=dict)
    verified: bool = False
    requests: int = 0
    bytes_transferred: int = 0
    seconds: float = 0.0
    attempts: list = field(default_factory=list)


def _part_paths(dest: Path) -> tuple[Path, Path]:
    part = dest.with_name(dest.name + ".part")
    return part, dest.with_name(dest.name + ".part.json")


def _clear_part(part: Path, side: Path) -> None:
    part.unlink(missing_ok=True)
    side.unlink(missing_ok=True)


def fetch(
    url: str,
    dest: str | os.PathLike,
    *,
    expected_size: int | None = None,
    sha256: str | None = None,
    md5: str | None = None,
    etag_md5: bool = False,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60.0,
    progress: Callable[[int, int | None], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> FetchResult:
    """Download ``url`` to ``dest`` through ``dest.part``; resume, verify, rename.

    Parameters
    ----------
    url : str
        http(s) URL. Refused unless on the loopback while ``BASELENS_OFFLINE`` is set.
    dest : path
        Final file. Written only by an atomic rename of the verified ``.part``.
    expected_size : int, optional
        Published size in bytes; a different ``Content-Length`` / ``Content-Range`` total
        is an error (the upstream file changed: re-plan).
    sha256, md5 : str, optional
        Published checksums (hex). A mismatch deletes the ``.part`` and raises.
    etag_md5 : bool
        Treat the server's ETag as the MD5 of the object when it looks like one (S3
        single-part uploads); multipart ETags (``"…-N"``) are ignored.
    retries : int
        Retries after the first attempt (``retries + 1`` requests at most) for connection
        errors, truncated bodies, timeouts, 408/425/429 and 5xx.
    backoff : float
        Seconds before the first retry; doubled each time, at most 60 s.
    timeout : float
        Socket timeout per request (seconds).
    progress : callable, optional
        ``progress(bytes_so_far, total_or_None)`` after every chunk.

    Returns
    -------
    FetchResult

    Raises
    ------
    DownloadError
        4xx other than 408/425/429 (at once), a size or checksum mismatch, or the last
        retry failing; the message names the URL, the status and what to do.
    """
    check_url_allowed(url)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part, side = _part_paths(dest)
    t0 = time.perf_counter()
    published = {k: v.lower() for k, v in (("sha256", sha256), ("md5", md5)) if v}

    if dest.exists():
        ok = expected_size is None or dest.stat().st_size == expected_size
        sums = _hash_file(dest, ["sha256"] + (["md5"] if "md5" in published else [])) if ok else {}
        if ok and all(sums.get(a) == v for a, v in published.items()):
            return FetchResult(url, dest, dest.stat().st_size, sums["sha256"], "skipped",
                               published, verified=bool(published),
                               seconds=time.perf_counter() - t0)

    # A .part from a different URL (or an unreadable sidecar) is not ours to continue.
    validator: dict = {}
    if part.exists():
        try:
            validator = json.loads(side.read_text()) if side.exists() else {}
        except (OSError, ValueError):
            validator = {}
        if validator.get("url") not in (None, url):
            _clear_part(part, side)
            validator = {}

    result = FetchResult(url, dest, 0, "", "downloaded", published)
    resumed_any = False
    last_error = ""
    attempt = 0
    while True:
        offset = part.stat().st_size if part.exists() else 0
        if expected_size is not None and offset > expected_size:
            _clear_part(part, side)
            offset, validator = 0, {}
        try:
            if expected_size is not None and offset == expected_size and offset > 0:
                total = expected_size  # the .part already holds every byte: verify it
                server_md5 = validator.get("etag_md5")
            else:
                total, server_md5, resumed = _transfer(
                    url, part, side, offset, validator, expected_size, timeout, progress, result)
                resumed_any |= resumed
            break
        except _Restart:
            continue  # the .part was discarded; start again at byte 0, not a retry
        except _Retryable as exc:
            last_error = str(exc)
            result.attempts.append(last_error)
            if attempt >= retries:
                raise DownloadError(
                    f"{url}: giving up after {attempt + 1} attempt(s); last error: {last_error}. "
                    f"The partial file {part} is kept: re-run the same command to resume it "
                    "(more attempts: --retries N).") from None
            wait = min(60.0, backoff * (2 ** attempt))
            if exc.retry_after is not None:
                wait = min(60.0, max(wait, exc.retry_after))
            attempt += 1
            sleep(wait)

    size = part.stat().st_size
    if total is not None and size != total:  # pragma: no cover - _transfer guarantees this
        raise DownloadError(f"{url}: {size} bytes on disk but {total} announced")
    if expected_size is not None and size != expected_size:
        _clear_part(part, side)
        raise DownloadError(f"{url}: got {size} bytes, the published size is {expected_size}; "
                            "the upstream file changed — re-run to re-plan")
    if etag_md5 and server_md5 and "md5" not in published:
        published["md5"] = server_md5
    sums = _hash_file(part, ["sha256"] + (["md5"] if "md5" in published else []))
    bad = [a for a, v in published.items() if sums[a] != v]
    if bad:
        _clear_part(part, side)
        a = bad[0]
        raise DownloadError(
            f"{url}: {a} mismatch (published {published[a]}, downloaded {sums[a]}); the "
            f"partial file was deleted and {dest} not written. Re-run to download it again; "
            "if it persists, the mirror or the published checksum is wrong.")
    with open(part, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(part, dest)
    side.unlink(missing_ok=True)
    result.size = size
    result.sha256 = sums["sha256"]
    result.published = published
    result.verified = bool(published)
    result.status = "resumed" if resumed_any else "downloaded"
    result.seconds = time.perf_counter() - t0
    return result


class _Restart(Exception):
    """The partial file cannot be continued and was deleted: request again from byte 0."""


class _Retryable(Exception):
    def __init__(self, msg: str, retry_after: float | None = None) -> None:
        super().__init__(msg)
        self.retry_after = retry_after


def _open(url: str, headers: dict, timeout: float, method: str = "GET"):
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **headers},
                                 method=method)
    return urllib.request.urlopen(req, timeout=timeout)


def _transfer(url, part: Path, side: Path, offset: int, validator: dict,
              expected_size, timeout, progress, result: FetchResult):
    """One request; appends to / rewrites ``part``. Returns (total, etag_md5, resumed)."""
    headers = {"Accept-Encoding": "identity"}
    if offset > 0:
        headers["Range"] = f"bytes={offset}-"
        v = validator.get("etag") or validator.get("last_modified")
        if v and not str(v).startswith("W/"):
            headers["If-Range"] = v
    result.requests += 1
    try:
        resp = _open(url, headers, timeout)
    except urllib.error.HTTPError as exc:
        code = exc.code
        exc.close()
        if code == 416 and offset > 0:
            # Our .part is at least as long as the file: start over rather than guess.
            _clear_part(part, side)
            raise _Restart() from None
        if code in _RETRY_STATUS or 500 <= code < 600:
            raise _Retryable(f"HTTP {code} {exc.reason}", _retry_after(exc.headers)) from None
        hint = _HINT_4XX.get(code, "check the URL")
        raise DownloadError(f"{url}: HTTP {code} {exc.reason} — {hint}.") from None
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError,
            socket.timeout, TimeoutError) as exc:
        raise _Retryable(f"cannot connect: {getattr(exc, 'reason', exc)}") from None

    with resp:
        status = resp.status
        h = resp.headers
        cr = _content_range(h.get("Content-Range"))
        length = h.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        resumed = False
        if status == 206:
            if cr is None or cr[0] != offset:
                _clear_part(part, side)
                raise _Retryable(f"206 with Content-Range {h.get('Content-Range')!r} does not "
                                 f"start at byte {offset}; the .part was discarded")
            total = cr[2]
            mode, start = "ab", offset
            resumed = offset > 0
        elif status == 200:
            total = length
            mode, start = "wb", 0  # full body: a Range we sent was ignored, start over
        else:
            raise _Retryable(f"unexpected HTTP {status}")
        if expected_size is not None and total is not None and total != expected_size:
            raise DownloadError(
                f"{url}: the server announces {total} bytes but the published size is "
                f"{expected_size}; the upstream file changed — re-run to re-plan "
                "(or the mirror is stale).")
        etag = h.get("ETag")
        new_validator = {"url": url, "etag": etag, "last_modified": h.get("Last-Modified"),
                         "etag_md5": _etag_md5(etag, h), "total": total}
        if mode == "wb" or not side.exists():
            side.write_text(json.dumps(new_validator))
        validator.update(new_validator)

        got = start
        with open(part, mode) as fh:
            while True:
                try:
                    chunk = resp.read(_CHUNK)
                except (http.client.IncompleteRead, ConnectionError, socket.timeout,
                        TimeoutError, http.client.HTTPException, OSError) as exc:
                    fh.flush()
                    raise _Retryable(f"connection lost after {got} of {total or '?'} bytes "
                                     f"({type(exc).__name__})") from None
                if not chunk:
                    break
                fh.write(chunk)
                got += len(chunk)
                result.bytes_transferred += len(chunk)
                if progress is not None:
                    progress(got, total)
        if total is not None and got < total:
            raise _Retryable(f"truncated body: {got} of {total} bytes")
        if total is not None and got > total:
            _clear_part(part, side)
            raise _Retryable(f"server sent {got} bytes, more than the {total} announced")
        return (total if total is not None else got), validator.get("etag_md5"), resumed


def head(url: str, *, timeout: float = 30.0) -> dict:
    """``HEAD`` the URL: ``{"size": int|None, "etag_md5": str|None, "status": int}``.
    A 4xx/5xx answer gives ``size=None`` and its status (no exception)."""
    check_url_allowed(url)
    try:
        with _open(url, {"Accept-Encoding": "identity"}, timeout, method="HEAD") as resp:
            n = resp.headers.get("Content-Length")
            return {"size": int(n) if n and n.isdigit() else None,
                    "etag_md5": _etag_md5(resp.headers.get("ETag"), resp.headers),
                    "status": resp.status}
    except urllib.error.HTTPError as exc:
        exc.close()
        return {"size": None, "etag_md5": None, "status": exc.code}
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        return {"size": None, "etag_md5": None, "status": 0, "error": str(exc)}


# ----------------------------------------------------------------------------- manifest


@dataclass
class FileSpec:
    """One file of a plan.

    url : upstream (or mirrored) URL.
    rel : local path relative to the output folder (POSIX separators).
    size, sha256, md5 : published size / checksums when the host lists them.
    etag_md5 : trust an MD5-looking ETag as the published MD5 (S3).
    kind : ``"index"`` (needed to plan the rest; fetched even in a dry run) or ``"data"``.
    """

    url: str
    rel: str
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None
    etag_md5: bool = False
    kind: str = "data"


class Manifest:
    """``DIR/manifest.json``: what was fetched, from where, with which checksums.

    ``files[rel]`` holds ``url, path, size, sha256`` (computed locally), ``published``
    (``{"sha256"|"md5": hex}`` announced upstream), ``verified`` (a published checksum
    was compared and matched), ``status`` and ``fetched_at`` (UTC ISO time), plus
    ``mtime_ns`` to avoid re-hashing unchanged files on a re-run.
    """

    def __init__(self, path: str | os.PathLike, *, dataset: str = "", base_url: str = "") -> None:
        self.path = Path(path)
        self.data: dict = {"dataset": dataset, "base_url": base_url, "created": _now(),
                           "updated": _now(), "files": {}, "outputs": {}, "runs": []}
        self._last_write = 0.0
        self.dirty = False
        if self.path.exists():
            try:
                old = json.loads(self.path.read_text())
            except ValueError as exc:
                raise DownloadError(
                    f"{self.path} is not valid JSON ({exc}); delete it to re-verify every "
                    "file on the next run") from None
            if dataset and old.get("dataset") not in ("", None, dataset):
                raise DownloadError(
                    f"{self.path} belongs to dataset {old.get('dataset')!r}, not {dataset!r}: "
                    "use another --out folder")
            self.data.update(old)
            self.data["files"] = dict(old.get("files", {}))
        if dataset:
            self.data["dataset"] = dataset
        self.data["base_url"] = base_url or self.data.get("base_url", "")

    @property
    def files(self) -> dict:
        return self.data["files"]

    def complete(self, spec: FileSpec, root: Path) -> bool:
        """Whether ``spec`` is already on disk as recorded (size, then sha256 if touched)."""
        e = self.files.get(spec.rel)
        p = root / spec.rel
        if not e or not p.is_file():
            return False
        st = p.stat()
        if st.st_size != e.get("size"):
            return False
        if spec.size is not None and spec.size != e.get("size"):
            return False
        if spec.sha256 and spec.sha256.lower() != e.get("sha256"):
            return False
        if spec.md5 and e.get("published", {}).get("md5") not in (None, spec.md5.lower()):
            return False
        if st.st_mtime_ns != e.get("mtime_ns"):
            if _hash_file(p)["sha256"] != e.get("sha256"):
                return False
            e["mtime_ns"] = st.st_mtime_ns
            self.dirty = True
        return True

    def record(self, spec: FileSpec, res: FetchResult, root: Path) -> None:
        self.files[spec.rel] = {
            "url": spec.url, "path": spec.rel, "size": res.size, "sha256": res.sha256,
            "published": res.published, "verified": res.verified, "status": res.status,
            "fetched_at": _now(), "mtime_ns": (root / spec.rel).stat().st_mtime_ns,
            "kind": spec.kind,
        }
        self.dirty = True
        self.save(force=False)

    def save(self, force: bool = True) -> None:
        if not (self.dirty or force):
            return
        if not force and time.monotonic() - self._last_write < 2.0:
            return
        self.data["updated"] = _now()
        write_json_atomic(self.data, self.path)
        self._last_write = time.monotonic()
        self.dirty = False


class Downloader:
    """Fetch :class:`FileSpec` lists into ``out`` with a manifest, progress and a summary.

    ``dry_run=True`` fetches only ``kind="index"`` files (those a plan must read to know
    what else to fetch) and reports the sizes of the rest (published, else from ``HEAD``
    of the first 50 and extrapolated).
    """

    def __init__(self, out: str | os.PathLike, *, dataset: str, base_url: str = "",
                 retries: int = 5, backoff: float = 1.0, timeout: float = 60.0,
                 dry_run: bool = False, log: Callable[[str], None] = print) -> None:
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.dataset = dataset
        self.base_url = base_url
        self.retries, self.backoff, self.timeout = retries, backoff, timeout
        self.dry_run = dry_run
        self.log = log
        self.manifest = Manifest(self.out / "manifest.json", dataset=dataset, base_url=base_url)
        self.stats = {"downloaded": 0, "resumed": 0, "skipped": 0, "bytes": 0, "files": 0,
                      "verified": 0}
        self.planned: list[tuple[FileSpec, int | None, str]] = []
        self.t0 = time.perf_counter()

    def path(self, spec: FileSpec) -> Path:
        return self.out / spec.rel

    def get(self, spec: FileSpec, *, label: str = "") -> Path:
        """Fetch one file unless the manifest says it is complete; returns its path."""
        dest = self.path(spec)
        if self.manifest.complete(spec, self.out):
            self.stats["skipped"] += 1
            self.stats["files"] += 1
            return dest
        if self.dry_run and spec.kind != "index":
            raise RuntimeError("Downloader.get on a data file during a dry run")  # pragma: no cover
        t = time.perf_counter()
        try:
            res = fetch(spec.url, dest, expected_size=spec.size, sha256=spec.sha256, md5=spec.md5,
                        etag_md5=spec.etag_md5, retries=self.retries, backoff=self.backoff,
                        timeout=self.timeout, sleep=self._sleep_logged(spec),
                        progress=self._progress(spec))
        except DownloadError:
            self.manifest.save()
            raise
        self.manifest.record(spec, res, self.out)
        self.stats["files"] += 1
        self.stats[res.status] += 1
        self.stats["bytes"] += res.bytes_transferred
        self.stats["verified"] += int(res.verified)
        dt = max(time.perf_counter() - t, 1e-6)
        if res.status != "skipped":
            rate = res.bytes_transferred / dt
            self.log(f"{label}{res.status:<10} {human_bytes(res.size):>9}  "
                     f"{human_bytes(rate)}/s  {spec.rel}"
                     + ("  (checksum verified)" if res.verified else ""))
        return dest

    def _progress(self, spec: FileSpec, every: float = 5.0):
        """A ``progress`` callback that logs a large file's bytes and rate every few seconds."""
        t0 = last = time.monotonic()

        def _report(done: int, total: int | None) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last >= every:
                last = now
                rate = done / max(now - t0, 1e-6)
                self.log(f"  {spec.rel}: {human_bytes(done)} of {human_bytes(total)} "
                         f"({human_bytes(rate)}/s)")
        return _report

    def _sleep_logged(self, spec: FileSpec):
        def _sleep(s: float) -> None:
            self.log(f"  retrying {spec.rel} in {s:.1f} s")
            time.sleep(s)
        return _sleep

    def get_many(self, specs: list[FileSpec]) -> list[Path]:
        """Fetch every spec (or, in a dry run, list them with sizes). Duplicates by ``rel``
        are fetched once."""
        seen: dict[str, FileSpec] = {}
        for s in specs:
            seen.setdefault(s.rel, s)
        uniq = list(seen.values())
        if self.dry_run:
            self._plan(uniq)
            return [self.path(s) for s in uniq]
        n = len(uniq)
        try:
            for i, s in enumerate(uniq, 1):
                self.get(s, label=f"[{i}/{n}] ")
        finally:
            self.manifest.save()
        return [self.path(s) for s in uniq]

    def _plan(self, specs: list[FileSpec]) -> None:
        known, probed = [], 0
        for s in specs:
            if self.manifest.complete(s, self.out):
                self.planned.append((s, self.manifest.files[s.rel]["size"], "have"))
                continue
            size, how = s.size, "published"
            if size is None and probed < 50:
                probed += 1
                size, how = head(s.url, timeout=self.timeout)["size"], "HEAD"
            elif size is None:
                how = "estimated"
            self.planned.append((s, size, how))
            if size is not None:
                known.append(size)
        mean = sum(known) / len(known) if known else None
        self.planned = [(s, size if size is not None else (int(mean) if mean else None), how)
                        for s, size, how in self.planned]

    def dry_run_report(self, limit: int = 20) -> str:
        rows = self.planned
        lines = [f"dry run: {len(rows)} file(s) would be fetched into {self.out}"]
        for s, size, how in rows[:limit]:
            lines.append(f"  {human_bytes(size):>9}  ({how})  {s.rel}  <- {s.url}")
        if len(rows) > limit:
            lines.append(f"  … {len(rows) - limit} more")
        have = sum(sz or 0 for _, sz, how in rows if how == "have")
        todo = sum(sz or 0 for _, sz, how in rows if how != "have")
        unknown = sum(1 for _, sz, _ in rows if sz is None)
        est = sum(1 for _, _, how in rows if how == "estimated")
        lines.append(f"total to fetch: {human_bytes(todo)}"
                     + (f" ({est} size(s) extrapolated from the HEADed ones)" if est else "")
                     + (f"; {unknown} of unknown size" if unknown else "")
                     + (f"; already here: {human_bytes(have)}" if have else ""))
        return "\n".join(lines)

    def summary(self) -> str:
        dt = time.perf_counter() - self.t0
        s = self.stats
        rate = s["bytes"] / dt if dt > 0 else 0.0
        return (f"{s['files']} file(s): {s['downloaded']} downloaded, {s['resumed']} resumed, "
                f"{s['skipped']} already complete; {human_bytes(s['bytes'])} transferred in "
                f"{dt:.1f} s ({human_bytes(rate)}/s); {s['verified']} checked against a "
                f"published checksum; manifest: {self.manifest.path}")
