"""A fake Kaggle API on 127.0.0.1 for kagglehub 1.0.3 / kagglesdk 0.1.38, with planted faults.

kagglesdk POSTs JSON to ``{endpoint}/v1/{service}/{method}`` (the PROD URL shape). For
``dataset_download("owner/slug/versions/N", path="a/folder")`` kagglehub 1.0.3 makes, in order:

1. ``DownloadDataset {fileName: "a/folder"}``: the exact-file attempt; a folder answers 404 (JSON ``code``).
2. ``ListTreeDatasetFiles {path, pageSize: 200, pageToken}``: one folder level per call (``files``,
   ``directories``, ``nextPageToken``), walked recursively and page by page (this fake caps ``page_size``).
3. ``DownloadDataset {fileName: "a/folder/x.jpg"}`` per file: ``302`` to a signed URL on the storage listener
   (another origin, so requests drops the Authorization header), which serves the bytes with ``Content-Length``,
   ``Accept-Ranges`` and ``X-Goog-Hash: md5=...`` (kagglehub verifies it).

Auth: ``Authorization: Basic user:key`` (KAGGLE_USERNAME/KAGGLE_KEY or kaggle.json) or ``Bearer <token>``
(KAGGLE_API_TOKEN / ~/.kaggle/access_token). Unknown credentials or none -> 401; ``forbid(user_or_token)`` -> 403
(an account that has not accepted the dataset's rules). ``corrupt(path)`` serves bytes that do not match the MD5.
Every request is logged (:class:`KaggleRequest`).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import re
import threading
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, unquote, urlsplit

from tests.fakes.listeners import Listeners

DATASET_SERVICE = "/v1/datasets.DatasetApiService/"


def coco_val2017_files(ids: tuple[int, ...] = (139, 285, 632, 724, 776),
                       prefix: str = "coco2017/val2017") -> dict[str, bytes]:
    """A few tiny real JPEGs named like COCO val2017 (``%012d.jpg``); one is grayscale, like some real ones."""
    from PIL import Image

    files = {}
    for i, image_id in enumerate(ids):
        rng = random.Random(image_id)
        mode = "L" if i == 1 else "RGB"
        im = Image.frombytes(mode, (24, 16), rng.randbytes(24 * 16 * len(mode)))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=80)
        files[f"{prefix}/{image_id:012d}.jpg"] = buf.getvalue()
    return files


@dataclass(frozen=True)
class KaggleRequest:
    server: str  # "api" or "storage"
    method: str
    path: str  # unquoted URL path
    body: dict  # the JSON request (API calls)
    status: int
    auth: str | None  # "basic:<user>", "bearer", "invalid", or None; never the secret itself


@dataclass
class _Dataset:
    files: dict[str, bytes]


@dataclass
class FakeKaggle(Listeners):
    """Threaded fake Kaggle API + storage (random ports). Context manager; ``url`` is the API endpoint."""

    listeners = ("api", "storage")
    thread_prefix = "fake-kaggle"

    page_size_cap: int = 2
    allow_anonymous: bool = False
    datasets: dict[tuple[str, str, int], _Dataset] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    forbidden: set[str] = field(default_factory=set)
    log: list[KaggleRequest] = field(default_factory=list)
    _corrupt: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _servers: dict[str, ThreadingHTTPServer] = field(default_factory=dict)

    # -- content, accounts, faults ------------------------------------------------------------
    def add_dataset(self, handle: str, files: dict[str, bytes]) -> None:
        """``handle`` = ``owner/slug/versions/N``; ``files`` = ``{path in the dataset: bytes}``."""
        owner, slug, _, version = handle.split("/")
        self.datasets[(owner, slug, int(version))] = _Dataset(dict(files))

    def add_user(self, username: str, key: str) -> None:
        self.users[username] = key

    def add_token(self, token: str) -> None:
        self.tokens.add(token)

    def forbid(self, principal: str) -> None:
        """A username or token that is valid but may not read the datasets (rules not accepted)."""
        self.forbidden.add(principal)

    def corrupt(self, path: str) -> None:
        self._corrupt.add(path)

    def heal(self) -> None:
        self._corrupt.clear()

    # -- the request log ----------------------------------------------------------------------
    def api_calls(self, method: str | None = None) -> list[KaggleRequest]:
        with self._lock:
            return [r for r in self.log if r.server == "api"
                    and (method is None or r.path == DATASET_SERVICE + method)]

    def storage_gets(self, path: str | None = None) -> list[KaggleRequest]:
        with self._lock:
            return [r for r in self.log if r.server == "storage" and r.method == "GET"
                    and (path is None or r.path.endswith("/" + path))]

    def clear_log(self) -> None:
        with self._lock:
            self.log.clear()

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self._base("api")

    @property
    def storage_url(self) -> str:
        return self._base("storage")

    def _handler(self, name: str) -> type[BaseHTTPRequestHandler]:
        return type(f"Kaggle{name.title()}Handler", (_Handler,), {"fake": self, "server_name": name})


_STORAGE = re.compile(r"^/storage/(?P<owner>[^/]+)/(?P<slug>[^/]+)/(?P<version>\d+)/(?P<path>.+)$")


class _Handler(BaseHTTPRequestHandler):
    fake: FakeKaggle
    server_name: str
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _record(self, status: int, body: dict | None = None, auth: str | None = None) -> None:
        with self.fake._lock:
            self.fake.log.append(KaggleRequest(self.server_name, self.command, self._path, body or {}, status, auth))

    def _send(self, status: int, body: bytes, headers: dict[str, str], head: bool = False) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, status: int, obj: dict, request: dict, auth: str | None) -> None:
        self._record(status, request, auth)
        self._send(status, json.dumps(obj).encode(), {"Content-Type": "application/json"})

    def _fail(self, status: int, message: str, request: dict, auth: str | None) -> None:
        self._json(status, {"code": status, "message": message}, request, auth)

    # -- auth ---------------------------------------------------------------------------------
    def _principal(self) -> tuple[str | None, str | None, bool]:
        """(principal, label for the log, valid)."""
        header = self.headers.get("Authorization", "")
        if header.lower().startswith("basic "):
            try:
                user, _, key = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                return None, "invalid", False
            ok = self.fake.users.get(user) == key
            return user, f"basic:{user}" if ok else "invalid", ok
        if header.lower().startswith("bearer "):
            token = header[7:]
            ok = token in self.fake.tokens
            return token, "bearer" if ok else "invalid", ok
        return None, None, self.fake.allow_anonymous

    # -- API ----------------------------------------------------------------------------------
    def do_POST(self) -> None:
        # also reachable as a PREFLIGHT_MIRROR would lay it out: /api.kaggle.com/v1/...
        self._path = unquote(urlsplit(self.path).path).removeprefix("/api.kaggle.com")
        length = int(self.headers.get("Content-Length") or 0)
        try:
            request = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            request = {}
        if self.server_name != "api" or not self._path.startswith(DATASET_SERVICE):
            return self._fail(404, f"no such endpoint in the fake Kaggle API: {self._path}", request, None)
        principal, label, valid = self._principal()
        if not valid:
            return self._fail(401, "Unauthenticated", request, label)
        if principal in self.fake.forbidden:
            return self._fail(403, "Permission 'datasets.get' was denied", request, label)
        method = self._path[len(DATASET_SERVICE):]
        key = (request.get("ownerSlug", ""), request.get("datasetSlug", ""))
        versions = [v for (o, s, v) in self.fake.datasets if (o, s) == key]
        if not versions:
            return self._fail(404, "Dataset not found", request, label)
        version = int(request.get("datasetVersionNumber") or max(versions))
        dataset = self.fake.datasets.get((*key, version))
        if dataset is None:
            return self._fail(404, f"Version {version} not found", request, label)
        if method == "GetDataset":
            return self._json(200, {"ref": "/".join(key), "currentVersionNumber": max(versions)}, request, label)
        if method == "ListTreeDatasetFiles":
            return self._list(dataset, request, label)
        if method == "DownloadDataset":
            name = request.get("fileName") or "archive.zip"
            if name != "archive.zip" and name not in dataset.files:
                return self._fail(404, f"File {name} not found", request, label)
            location = f"{self.fake.storage_url}/storage/{key[0]}/{key[1]}/{version}/{quote(name)}?X-Goog-Signature=x"
            self._record(302, request, label)
            return self._send(302, b"", {"Location": location, "Content-Type": "text/plain"})
        self._fail(404, f"method {method} not in the fake", request, label)

    def _list(self, dataset: _Dataset, request: dict, label: str | None) -> None:
        folder = (request.get("path") or "").strip("/")
        prefix = f"{folder}/" if folder else ""
        files, dirs = [], {}
        for path, data in sorted(dataset.files.items()):
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix):].split("/")
            if len(rest) == 1:
                files.append({"name": rest[0], "relativeUrl": path, "totalBytes": len(data)})
            else:
                dirs.setdefault(rest[0], {"name": rest[0], "relativeUrl": prefix + rest[0]})
        if not files and not dirs:
            return self._fail(404, f"Path {folder} not found", request, label)
        children = [("d", d) for d in dirs.values()] + [("f", f) for f in files]
        start = int(request.get("pageToken") or 0)
        size = min(int(request.get("pageSize") or 20), self.fake.page_size_cap)
        page = children[start:start + size]
        self._json(200, {
            "directories": [c for kind, c in page if kind == "d"],
            "files": [c for kind, c in page if kind == "f"],
            "totalChildren": len(children),
            "nextPageToken": str(start + size) if start + size < len(children) else "",
        }, request, label)

    # -- storage ------------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def _serve(self, head: bool) -> None:
        self._path = unquote(urlsplit(self.path).path)
        auth = "leaked" if "Authorization" in self.headers else None
        m = _STORAGE.match(self._path) if self.server_name == "storage" else None
        dataset = self.fake.datasets.get((m["owner"], m["slug"], int(m["version"]))) if m else None
        if dataset is None:
            self._record(404, auth=auth)
            return self._send(404, b"NoSuchKey", {"Content-Type": "text/plain"}, head)
        if m["path"] == "archive.zip":
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w") as z:
                for path, data in sorted(dataset.files.items()):
                    z.writestr(path, data)
            data = buf.getvalue()
        elif m["path"] in dataset.files:
            data = dataset.files[m["path"]]
        else:
            self._record(404, auth=auth)
            return self._send(404, b"NoSuchKey", {"Content-Type": "text/plain"}, head)
        md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
        if m["path"] in self.fake._corrupt:
            data = bytes(b ^ 0xFF for b in data[:16]) + data[16:]
        headers = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes",
                   "X-Goog-Hash": f"crc32c=AAAAAA==,md5={md5}"}
        status, rng = 200, re.match(r"^bytes=(\d+)-$", self.headers.get("Range", ""))
        if rng and int(rng[1]) < len(data):  # a resume of a partial file (kagglehub sends "bytes=N-")
            status, start = 206, int(rng[1])
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            data = data[start:]
        self._record(status, auth=auth)
        self._send(status, data, headers, head)
