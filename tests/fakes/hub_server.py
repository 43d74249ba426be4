"""A fake Hugging Face Hub on 127.0.0.1 for huggingface_hub 2.4 (and open_clip through it), with planted faults.

Serves model repos from local folders, ``{repo_id: folder}``, at revision ``main`` or by commit sha. A repo can
hold several commits (``add_revision``): ``main`` is the one last added with ``main=True``; a revision the repo
does not have answers 404 ``RevisionNotFound``, as the Hub does:

- ``GET /api/models/{repo}[/revision/{rev}]``: model info (``sha``, ``siblings``), used by ``snapshot_download``.
- ``GET /api/models/{repo}/tree/{rev}[/{path}]``: the file listing (git oid, size, ``lfs`` for large files).
- ``HEAD|GET /{repo}/resolve/{rev}/{file}``: small files directly (``ETag`` = git blob sha1); LFS files answer
  ``302`` to a second listener (the "CDN", another origin, so the client drops the token) with ``X-Linked-Etag``
  (sha256) and ``X-Linked-Size``. ``Range`` is honoured. No ``X-Xet-*`` headers and no ``xetHash``: the client
  then downloads over plain HTTP even though hf_xet is installed.
- ``GET /api/agent-harnesses``: the agent registry that huggingface_hub fetches once per process for its
  User-Agent (from the import-time ``HF_ENDPOINT``); answered empty.

Faults: unknown repo -> 404 ``RepoNotFound``; ``gate(repo, tokens)`` -> 401 without a token, 403 with a token
not in ``tokens`` (``GatedRepo``, as the Hub does for file downloads; metadata stays public);
``drop(repo, file, after)`` -> the next GET of its body is cut after ``after`` bytes (once);
``corrupt(repo, file)`` -> the body differs from what the ETag promises (same size), at every revision.
Every request is logged (:class:`HubRequest`) so tests can assert exactly-once downloads.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from tests.fakes.listeners import Listeners, cut_connection, send_simple

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".model", ".msgpack", ".h5", ".onnx")
LFS_MIN_SIZE = 10 * 1024 * 1024


def git_blob_oid(data: bytes) -> str:
    """The git object id of a blob: what the Hub uses as ETag for non-LFS files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass(frozen=True)
class HubFile:
    path: str
    data: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def oid(self) -> str:
        return git_blob_oid(self.data)

    @property
    def etag(self) -> str:
        """The name huggingface_hub gives the blob in its cache."""
        return self.sha256 if self.lfs else self.oid


@dataclass
class HubRepo:
    repo_id: str
    commits: dict[str, dict[str, HubFile]]  # commit sha -> files at that commit
    main: str  # the commit ``main`` points at
    gated_tokens: frozenset[str] | None = None  # None = not gated

    @property
    def files(self) -> dict[str, HubFile]:
        return self.commits[self.main]

    @property
    def sha(self) -> str:
        """The commit of ``main``."""
        return self.main

    def at(self, rev: str | None) -> tuple[str, dict[str, HubFile]] | None:
        """(commit, files) of ``rev`` (``None``/``main`` or a commit sha); None when the repo has no such revision."""
        commit = self.main if rev in (None, "main") else rev
        files = self.commits.get(commit)
        return None if files is None else (commit, files)


def commit_sha(repo_id: str, files: dict[str, HubFile]) -> str:
    h = hashlib.sha1(repo_id.encode())
    for path in sorted(files):
        h.update(f"{path}\0{files[path].oid}\0".encode())
    return h.hexdigest()


@dataclass(frozen=True)
class HubRequest:
    server: str  # "hub" or "cdn"
    method: str
    path: str  # unquoted URL path, without the query
    status: int
    range: str | None
    authorized: bool  # an Authorization header came with it
    body_bytes: int  # bytes of body sent (after a planted drop: the bytes before the cut)


class FakeHub(Listeners):
    """Threaded fake Hub (random port) plus its "CDN" listener. Context manager; ``url`` is the endpoint."""

    listeners = ("hub", "cdn")
    thread_prefix = "fake-hub"

    def __init__(self, repos: dict[str, Path] | None = None) -> None:
        self.repos: dict[str, HubRepo] = {}
        self.log: list[HubRequest] = []
        self._drops: dict[tuple[str, str], int] = {}
        self._corrupt: set[tuple[str, str]] = set()
        self.redirects: dict[tuple[str, str], str] = {}  # (repo, file) -> a Location on another host, no ETag
        self._lock = threading.Lock()
        self._servers = {}
        for repo_id, folder in (repos or {}).items():
            self.add_repo(repo_id, folder)

    # -- content and faults -------------------------------------------------------------------
    def add_repo(self, repo_id: str, folder: Path | dict[str, bytes], sha: str | None = None) -> HubRepo:
        """Serve ``folder`` (read now) as ``repo_id`` with one commit, ``main``; a dict ``{path: bytes}`` works too.

        ``sha`` names the commit (default: derived from the repo id and the files)."""
        files = _files(folder)
        commit = sha or commit_sha(repo_id, files)
        with self._lock:
            self.repos[repo_id] = HubRepo(repo_id, {commit: files}, commit)
            return self.repos[repo_id]

    def add_revision(self, repo_id: str, folder: Path | dict[str, bytes], sha: str | None = None,
                     main: bool = False) -> str:
        """Add a commit to ``repo_id`` (``main`` moves to it when ``main``); returns its sha."""
        files = _files(folder)
        commit = sha or commit_sha(repo_id, files)
        with self._lock:
            repo = self.repos[repo_id]
            repo.commits[commit] = files
            if main:
                repo.main = commit
        return commit

    def gate(self, repo_id: str, tokens: set[str] | frozenset[str] = frozenset()) -> None:
        self.repos[repo_id].gated_tokens = frozenset(tokens)

    def drop(self, repo_id: str, filename: str, after: int) -> None:
        with self._lock:
            self._drops[(repo_id, filename)] = after

    def corrupt(self, repo_id: str, filename: str) -> None:
        with self._lock:
            self._corrupt.add((repo_id, filename))

    def heal(self) -> None:
        """Remove drop/corrupt faults (gates stay)."""
        with self._lock:
            self._drops.clear()
            self._corrupt.clear()

    def file(self, repo_id: str, filename: str, revision: str | None = None) -> HubFile:
        found = self.repos[repo_id].at(revision)
        assert found is not None, f"the fake {repo_id} has no revision {revision}"
        return found[1][filename]

    # -- the request log ----------------------------------------------------------------------
    def requests(self, method: str | None = None, contains: str | None = None) -> list[HubRequest]:
        with self._lock:
            return [r for r in self.log if (method is None or r.method == method)
                    and (contains is None or contains in r.path)]

    def downloads(self, repo_id: str, filename: str) -> list[HubRequest]:
        """GETs that sent (part of) the body of ``filename``, whichever listener served it."""

        def hit(r: HubRequest) -> bool:
            if r.method != "GET" or r.body_bytes == 0:
                return False
            m = (_CDN if r.server == "cdn" else _RESOLVE).match(r.path)
            return m is not None and m["repo"] == repo_id and m["file"] == filename

        with self._lock:
            return [r for r in self.log if hit(r)]

    def clear_log(self) -> None:
        with self._lock:
            self.log.clear()

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self._base("hub")

    @property
    def cdn_url(self) -> str:
        return self._base("cdn")

    def _handler(self, name: str) -> type[BaseHTTPRequestHandler]:
        return type(f"{name.title()}Handler", (_Handler,), {"hub": self, "server_name": name})


def _files(folder: Path | dict[str, bytes]) -> dict[str, HubFile]:
    if isinstance(folder, dict):
        items = dict(folder)
    else:
        folder = Path(folder)
        items = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
    return {path: HubFile(path, data, path.endswith(LFS_SUFFIXES) or len(data) >= LFS_MIN_SIZE)
            for path, data in items.items()}


def _cdn_path(repo_id: str, f: HubFile) -> str:
    return f"/lfs/{repo_id}/{f.sha256}/{f.path}"  # by content: several revisions may hold different bytes


_REPO = r"(?P<repo>[^/]+/[^/]+)"
_INFO = re.compile(rf"^/api/models/{_REPO}(?:/revision/(?P<rev>[^/]+))?$")
_TREE = re.compile(rf"^/api/models/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<sub>.+))?$")
_RESOLVE = re.compile(rf"^/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_CDN = re.compile(rf"^/lfs/{_REPO}/(?P<sha256>[0-9a-f]{{64}})/(?P<file>.+)$")
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    server_name: str
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch(head=False)

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    # -- plumbing -----------------------------------------------------------------------------
    def _record(self, status: int, body_bytes: int) -> None:
        with self.hub._lock:
            self.hub.log.append(HubRequest(self.server_name, self.command, self._path, status,
                                           self.headers.get("Range"), "authorization" in self.headers, body_bytes))

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False,
              content_type: str = "application/json") -> None:
        self._record(status, 0 if head else len(body))
        send_simple(self, status, body, content_type, headers, head)

    def _json(self, obj: object, head: bool = False) -> None:
        self._send(200, json.dumps(obj).encode(), head=head)

    def _error(self, status: int, code: str, message: str, head: bool, extra: dict[str, str] | None = None) -> None:
        headers = {"X-Error-Code": code, "X-Error-Message": message, **(extra or {})}
        self._send(status, json.dumps({"error": message}).encode(), headers, head)

    def _dispatch(self, head: bool) -> None:
        self._path = unquote(urlsplit(self.path).path)
        try:
            if self.server_name == "cdn":
                return self._cdn(head)
            if self._path == "/api/agent-harnesses":
                return self._json({"standardEnvVars": [], "harnesses": {}}, head)
            for pattern, handler in ((_TREE, self._tree), (_INFO, self._info), (_RESOLVE, self._resolve)):
                m = pattern.match(self._path)
                if m:
                    return handler(m, head)
            self._error(404, "NotFound", f"no such endpoint in the fake Hub: {self._path}", head)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _repo(self, m: re.Match, head: bool) -> tuple[HubRepo, str, dict[str, HubFile]] | None:
        """(repo, commit, files) the request names, or None after answering 404."""
        repo = self.hub.repos.get(m["repo"])
        if repo is None:
            self._error(404, "RepoNotFound", "Repository not found", head)
            return None
        rev = m["rev"] if "rev" in m.groupdict() else None
        found = repo.at(rev)
        if found is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}", head)
            return None
        return repo, *found

    # -- endpoints ----------------------------------------------------------------------------
    def _info(self, m: re.Match, head: bool) -> None:
        if (found := self._repo(m, head)) is None:
            return
        repo, commit, files = found
        self._json({
            "id": repo.repo_id, "modelId": repo.repo_id, "sha": commit, "private": False,
            "gated": "manual" if repo.gated_tokens is not None else False, "disabled": False,
            "siblings": [{"rfilename": p} for p in sorted(files)],
        }, head)

    def _tree(self, m: re.Match, head: bool) -> None:
        if (found := self._repo(m, head)) is None:
            return
        _, _, files = found
        recursive = re.search(r"recursive=(true|True|1)", urlsplit(self.path).query) is not None
        sub = (m["sub"] or "").strip("/")
        prefix = f"{sub}/" if sub else ""
        entries: dict[str, dict] = {}
        for path, f in sorted(files.items()):
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix):].split("/")
            for depth in range(1, len(rest)):  # the folders on the way
                if depth > 1 and not recursive:
                    break
                folder = prefix + "/".join(rest[:depth])
                entries.setdefault(folder, {"type": "directory", "oid": hashlib.sha1(folder.encode()).hexdigest(),
                                            "size": 0, "path": folder})
            if len(rest) > 1 and not recursive:
                continue
            entry = {"type": "file", "oid": f.oid, "size": len(f.data), "path": path}
            if f.lfs:
                entry["lfs"] = {"oid": f.sha256, "size": len(f.data), "pointerSize": 134}
            entries[path] = entry
        self._json(list(entries.values()), head)

    def _resolve(self, m: re.Match, head: bool) -> None:
        if (found := self._repo(m, head)) is None:
            return
        repo, sha, files = found
        commit = {"X-Repo-Commit": sha}
        if repo.gated_tokens is not None:
            auth = self.headers.get("authorization", "")
            token = auth[7:] if auth.lower().startswith("bearer ") else ""
            if not token or token.startswith("hf_expired"):  # none, or one the Hub no longer accepts
                return self._error(401, "GatedRepo", f"Access to model {repo.repo_id} is restricted. You must have "
                                   "access to it and be authenticated to access it. Please log in.", head, commit)
            if token not in repo.gated_tokens:
                return self._error(403, "GatedRepo", f"Access to model {repo.repo_id} is restricted and you are "
                                   "not in the authorized list.", head, commit)
        if (away := self.hub.redirects.get((repo.repo_id, m["file"]))) is not None:
            return self._send(302, b"", {**commit, "Location": away}, head)
        f = files.get(m["file"])
        if f is None:
            return self._error(404, "EntryNotFound", f"{m['file']} does not exist on \"{m['rev']}\"", head, commit)
        if f.lfs:
            location = self.hub.cdn_url + quote(_cdn_path(repo.repo_id, f))
            return self._send(302, b"", {**commit, "Location": location, "ETag": f'"{f.oid}"',
                                         "X-Linked-Etag": f'"{f.sha256}"', "X-Linked-Size": str(len(f.data))}, head)
        self._body(repo, f, head, {**commit, "ETag": f'"{f.oid}"'})

    def _cdn(self, head: bool) -> None:
        m = _CDN.match(self._path)
        repo = self.hub.repos.get(m["repo"]) if m else None
        f = next((files[m["file"]] for files in repo.commits.values() if m["file"] in files
                  and files[m["file"]].sha256 == m["sha256"]), None) if repo else None
        if f is None:
            return self._send(404, b"NoSuchKey", head=head, content_type="text/plain")
        self._body(repo, f, head, {"ETag": f'"{f.sha256}"'})

    def _body(self, repo: HubRepo, f: HubFile, head: bool, headers: dict[str, str]) -> None:
        key = (repo.repo_id, f.path)
        with self.hub._lock:
            data = f.data
            if key in self.hub._corrupt:
                data = bytes(b ^ 0xFF for b in data[:64]) + data[64:]
            drop = None if head else self.hub._drops.pop(key, None)
        size, start, status = len(data), 0, 200
        extra = {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream", **headers}
        rng = _RANGE.match(self.headers.get("Range", "").strip())
        if rng:
            start = int(rng[1])
            if start >= size:
                return self._send(416, b"", {"Content-Range": f"bytes */{size}"}, head)
            end = min(int(rng[2]), size - 1) if rng[2] else size - 1
            data, status = data[start:end + 1], 206
            extra["Content-Range"] = f"bytes {start}-{end}/{size}"
        sent = len(data) if drop is None else min(drop, len(data))
        self._record(status, 0 if head else sent)
        self.send_response(status)
        for k, v in extra.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if head:
            return
        self.wfile.write(data[:sent])
        if sent < len(data):  # planted drop: cut the connection mid-body
            cut_connection(self)
