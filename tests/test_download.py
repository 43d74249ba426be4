"""fetchers.download against a real requests client and the fake server on 127.0.0.1 (planted faults)."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from filelock import FileLock

from fetchers.download import (
    DownloadError,
    ExistingFileDiffers,
    FetchResult,
    NotEnoughSpace,
    fetch_file,
    mirrored,
    redact,
)
from preflight_core.registry import IMAGENET_META_FILES, RemoteFile
from tests.fakes.http_server import FakeHTTPServer

REPO = Path(__file__).resolve().parents[1]
URL = "https://files.example.org/pub/data/blob.bin"
CHUNK = 64 * 1024
FAST = dict(backoff=0.001, max_backoff=0.01, chunk_size=CHUNK, progress=None)  # tiny delays for tests


def pinned(data: bytes, *urls: str, name: str = "blob.bin") -> RemoteFile:
    return RemoteFile(name, urls or (URL,), len(data), hashlib.sha256(data).hexdigest())


@pytest.fixture(scope="module")
def payload() -> bytes:
    return os.urandom(1_000_000)


@pytest.fixture
def served(http_mirror: FakeHTTPServer, payload: bytes) -> tuple[FakeHTTPServer, RemoteFile, str]:
    """The payload served under URL's mirror path; (server, pin, server path)."""
    return http_mirror, pinned(payload), http_mirror.serve_url(URL, payload)


def gets(server: FakeHTTPServer, path: str) -> list:
    return server.requests(path, "GET")


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock"))


# --- mirror URLs and redaction ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("mirror", "url", "expected"),
    [
        (None, URL, URL),
        ("http://127.0.0.1:8000", URL, "http://127.0.0.1:8000/files.example.org/pub/data/blob.bin"),
        ("http://mirror:8000/", "https://h.org/a/b.json", "http://mirror:8000/h.org/a/b.json"),
        ("http://m", "https://h.org:8443/a?x=1", "http://m/h.org:8443/a?x=1"),
        ("http://m", "https://user:pw@h.org/a", "http://m/h.org/a"),
    ],
)
def test_mirrored_rewrites_host_and_path(monkeypatch, mirror, url, expected) -> None:
    if mirror is None:
        monkeypatch.delenv("PREFLIGHT_MIRROR", raising=False)
    else:
        monkeypatch.setenv("PREFLIGHT_MIRROR", mirror)
    assert mirrored(url) == expected


def test_redact_hides_credentials() -> None:
    shown = redact("https://user:secret@h.org/f.bin?token=abc123&v=2&X-Amz-Signature=zz")
    assert "secret" not in shown and "abc123" not in shown and "zz" not in shown
    assert shown.startswith("https://h.org/f.bin?") and "v=2" in shown
    assert redact("https://user:p@ss@h.org/f.bin?v=a@b") == "https://h.org/f.bin?v=a@b"  # an @ in the password


# --- the happy path, exactly once -----------------------------------------------------------
def test_downloads_verifies_and_renames(served, tmp_path: Path, payload: bytes) -> None:
    server, remote, path = served
    result = fetch_file(remote, tmp_path, **FAST)
    assert result == FetchResult(tmp_path / "blob.bin", len(payload), result.seconds,
                                 f"{server.url}{path}", False)
    assert (tmp_path / "blob.bin").read_bytes() == payload
    assert leftovers(tmp_path) == ["blob.bin"]  # no temp file left
    assert len(gets(server, path)) == 1


def test_present_file_is_not_downloaded_again(served, tmp_path: Path) -> None:
    server, remote, path = served
    fetch_file(remote, tmp_path, **FAST)
    mtime = (tmp_path / "blob.bin").stat().st_mtime_ns
    again = fetch_file(remote, tmp_path, **FAST)
    assert again.already_present and again.bytes_downloaded == 0 and again.url is None
    assert len(gets(server, path)) == 1
    assert (tmp_path / "blob.bin").stat().st_mtime_ns == mtime


def test_recheck_under_lock_sees_the_file_another_process_finished(served, tmp_path: Path, payload: bytes) -> None:
    server, remote, path = served
    results: list[FetchResult] = []
    with FileLock(str(tmp_path / ".blob.bin.lock")):  # "another process" is downloading
        worker = threading.Thread(target=lambda: results.append(fetch_file(remote, tmp_path, **FAST)))
        worker.start()
        time.sleep(0.3)
        assert not results, "fetch_file must wait for the lock"
        (tmp_path / "blob.bin").write_bytes(payload)  # ... and finishes
    worker.join(10)
    assert results and results[0].already_present
    assert gets(server, path) == []


def test_a_lock_wait_says_who_holds_it_and_keeps_waiting(served, tmp_path: Path, payload: bytes, capsys) -> None:
    """Issue 15.6: the waiter prints the holder (pid, host, since when, from the lock's side file), then waits."""
    from fetchers.download import acquire_lock, line_progress, release_lock

    server, remote, path = served
    results: list[FetchResult] = []
    holder = acquire_lock(tmp_path / ".blob.bin.lock", str(tmp_path / "blob.bin"))
    assert (tmp_path / ".blob.bin.lock.owner").is_file()
    worker = threading.Thread(target=lambda: results.append(
        fetch_file(remote, tmp_path, **(FAST | {"progress": line_progress}))))
    worker.start()
    time.sleep(1.5)
    assert not results
    (tmp_path / "blob.bin").write_bytes(payload)
    release_lock(holder)
    worker.join(10)
    assert results and results[0].already_present
    err = capsys.readouterr().err
    assert f"another fetch holds {tmp_path / '.blob.bin.lock'} (pid {os.getpid()} on {socket.gethostname()}, since " \
        in err, err
    assert "the other fetch finished after" in err
    assert not (tmp_path / ".blob.bin.lock.owner").exists()


def test_threads_racing_download_exactly_once(served, tmp_path: Path) -> None:
    server, remote, path = served
    server.fault(path, delay=0.01)  # slow enough that the racers overlap
    results: list[FetchResult] = []
    threads = [threading.Thread(target=lambda: results.append(fetch_file(remote, tmp_path, **FAST)))
               for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 6
    assert sum(not r.already_present for r in results) == 1
    assert len(gets(server, path)) == 1


RACER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from preflight_core.registry import RemoteFile
from fetchers.download import fetch_file
r = fetch_file(RemoteFile(*json.loads(sys.argv[2])), sys.argv[3], progress=None, backoff=0.001, chunk_size=65536)
print(json.dumps({"already_present": r.already_present, "bytes": r.bytes_downloaded}))
"""


def _spawn(code: str, remote: RemoteFile, dest: Path, env: dict[str, str]) -> subprocess.Popen:
    args = json.dumps([remote.filename, list(remote.urls), remote.size, remote.sha256])
    return subprocess.Popen([sys.executable, "-c", code, str(REPO), args, str(dest)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_processes_racing_download_exactly_once(served, tmp_path: Path) -> None:
    server, remote, path = served
    server.fault(path, delay=0.02)
    env = {**os.environ, "PREFLIGHT_MIRROR": server.url}
    procs = [_spawn(RACER, remote, tmp_path, env) for _ in range(3)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    results = [json.loads(o[0]) for o in outs]
    assert sorted(r["already_present"] for r in results) == [False, True, True]
    assert len(gets(server, path)) == 1


# --- temp-then-rename ------------------------------------------------------------------------
def test_killed_download_leaves_nothing_under_the_final_name(served, tmp_path: Path, payload: bytes) -> None:
    server, remote, path = served
    server.fault(path, delay=0.3)  # the server sends 256 KiB per 0.3 s: ~1.2 s for the whole body
    proc = _spawn(RACER, remote, tmp_path, {**os.environ, "PREFLIGHT_MIRROR": server.url})
    deadline = time.monotonic() + 20
    while not any(p.name.endswith(".part") and p.stat().st_size for p in tmp_path.glob(".blob.bin.*")):
        assert time.monotonic() < deadline and proc.poll() is None, "the download never started"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert not (tmp_path / "blob.bin").exists()
    assert [p for p in leftovers(tmp_path) if p.endswith(".part")]  # the killed run's temp file

    kept = max(p.stat().st_size for p in tmp_path.glob(".blob.bin.*.part"))
    server.reset()
    result = fetch_file(remote, tmp_path, **FAST)  # the rerun resumes the killed run's temp file (issue 17.9)
    assert not result.already_present and (tmp_path / "blob.bin").read_bytes() == payload
    assert leftovers(tmp_path) == ["blob.bin"]
    assert [r.range for r in gets(server, path)] == [f"bytes={kept}-"]
    assert result.bytes_downloaded == len(payload) - kept


def test_a_killed_runs_temp_file_that_is_not_a_prefix_is_not_taken(served, tmp_path: Path, payload: bytes) -> None:
    server, remote, path = served
    (tmp_path / ".blob.bin.0123456789ab.part").write_bytes(b"\0" * 300_000)  # the right length, wrong bytes
    result = fetch_file(remote, tmp_path, **FAST)
    assert (tmp_path / "blob.bin").read_bytes() == payload and leftovers(tmp_path) == ["blob.bin"]
    assert [r.range for r in gets(server, path)] == ["bytes=300000-", None]  # resumed, caught, restarted
    assert result.bytes_downloaded == len(payload) - 300_000 + len(payload)  # the wire bytes of both attempts


def test_failed_download_leaves_no_file(served, tmp_path: Path, payload: bytes) -> None:
    server, remote, path = served
    server.fault(path, body=payload[:-1] + b"!")  # right size, wrong bytes
    with pytest.raises(DownloadError):
        fetch_file(remote, tmp_path, **FAST)
    assert leftovers(tmp_path) == []


# --- resume, retries, backoff ----------------------------------------------------------------
def test_resumes_with_range_after_a_dropped_connection(served, tmp_path: Path, payload: bytes) -> None:
    server, remote, path = served
    server.fault(path, drop_after=5 * CHUNK + 1000)  # once
    result = fetch_file(remote, tmp_path, **FAST)
    assert (tmp_path / "blob.bin").read_bytes() == payload
    first, second = gets(server, path)
    assert (first.range, first.status) == (None, 200)
    assert second.status == 206 and second.range == f"bytes={5 * CHUNK + 1000}-"  # every byte kept, then resumed
    assert result.bytes_downloaded == len(payload)  # nothing downloaded twice


def test_resume_keeps_going_while_each_attempt_makes_progress(served, tmp_path: Path, payload: bytes) -> None:
    server, remote, path = served
    server.fault(path, drop_after=2 * CHUNK + 10, drop_times=None)  # every response is cut
    fetch_file(remote, tmp_path, attempts=2, **{k: v for k, v in FAST.items()})
    assert (tmp_path / "blob.bin").read_bytes() == payload
    assert len(gets(server, path)) > 2  # far more than `attempts`: progress resets the count


def test_server_ignoring_range_restarts_from_zero(served, tmp_path: Path, payload: bytes) -> None:
    server, remote, path = served
    server.fault(path, drop_after=5 * CHUNK + 1000, ignore_range=True)
    result = fetch_file(remote, tmp_path, **FAST)
    assert (tmp_path / "blob.bin").read_bytes() == payload
    second = gets(server, path)[1]
    assert second.range is not None and second.status == 200
    assert result.bytes_downloaded == 5 * CHUNK + 1000 + len(payload)


def test_content_range_not_matching_the_resume_point_restarts(served, tmp_path: Path, payload: bytes) -> None:
    server, remote, path = served
    server.fault(path, drop_after=3 * CHUNK + 5, range_from_zero=True)
    fetch_file(remote, tmp_path, **FAST)
    assert (tmp_path / "blob.bin").read_bytes() == payload
    assert [r.status for r in gets(server, path)] == [200, 206, 200]


def test_server_ignoring_range_and_always_dropping_gives_up(served, tmp_path: Path) -> None:
    server, remote, path = served
    server.fault(path, drop_after=3 * CHUNK, drop_times=None, ignore_range=True)
    with pytest.raises(DownloadError, match="gave up after 3 attempts in a row without progress"):
        fetch_file(remote, tmp_path, attempts=3, **FAST)
    assert leftovers(tmp_path) == []


def test_retries_transient_errors_with_backoff(served, tmp_path: Path, payload: bytes) -> None:
    server, remote, path = served
    server.fault(path, status=503, status_times=3)
    t0 = time.monotonic()
    fetch_file(remote, tmp_path, **{**FAST, "backoff": 0.05, "max_backoff": 1.0})
    assert time.monotonic() - t0 >= 0.05 + 0.1 + 0.2  # three doubling delays
    assert [r.status for r in gets(server, path)] == [503, 503, 503, 200]
    assert (tmp_path / "blob.bin").read_bytes() == payload


def test_gives_up_after_attempts_without_progress(served, tmp_path: Path) -> None:
    server, remote, path = served
    server.fault(path, status=503, status_times=None)
    with pytest.raises(DownloadError) as err:
        fetch_file(remote, tmp_path, attempts=4, **FAST)
    assert len(gets(server, path)) == 4
    assert "gave up after 4 attempts" in str(err.value) and "503" in str(err.value)
    assert f"{server.url}{path}" in str(err.value)
    assert leftovers(tmp_path) == []


def test_read_timeout_is_retried_then_reported(served, tmp_path: Path) -> None:
    server, remote, path = served
    server.fault(path, delay=0.5)
    with pytest.raises(DownloadError, match="gave up after 2 attempts"):
        fetch_file(remote, tmp_path, attempts=2, timeout=(2, 0.1), **FAST)
    assert len(gets(server, path)) == 2


# --- recognizing wrong answers ---------------------------------------------------------------
@pytest.mark.parametrize("content_type", ["text/html; charset=utf-8", "application/octet-stream"])
def test_html_error_page_is_recognized(served, tmp_path: Path, content_type: str) -> None:
    server, remote, path = served
    server.fault(path, html=True, html_content_type=content_type)
    with pytest.raises(DownloadError) as err:
        fetch_file(remote, tmp_path, **FAST)
    msg = str(err.value)
    assert "got an HTML page instead of blob.bin" in msg and "needs a login or moved" in msg
    assert f"{server.url}{path}" in msg
    assert len(gets(server, path)) == 1  # not retried: it is not transient
    assert leftovers(tmp_path) == []


def test_html_page_with_the_exact_pinned_size_is_still_recognized(http_mirror, tmp_path: Path) -> None:
    from tests.fakes.http_server import HTML_ERROR_PAGE

    remote = pinned(b"x" * len(HTML_ERROR_PAGE), name="labels.json")
    path = http_mirror.serve_url(URL, HTML_ERROR_PAGE)  # served as application/octet-stream
    with pytest.raises(DownloadError, match="got an HTML page instead of labels.json"):
        fetch_file(remote, tmp_path, **FAST)
    assert len(gets(http_mirror, path)) == 1


@pytest.mark.parametrize("size", [999_000, 1_000_500, 0])
def test_wrong_size_body_is_reported(served, tmp_path: Path, size: int) -> None:
    server, remote, path = served
    server.fault(path, wrong_size=size)
    with pytest.raises(DownloadError, match=r"wrong size: got [\d,]+ bytes of blob.bin, the pinned size is 1,000,000"):
        fetch_file(remote, tmp_path, **FAST)
    assert leftovers(tmp_path) == []


def test_sha256_mismatch_is_reported(served, tmp_path: Path, payload: bytes) -> None:
    server, remote, path = served
    bad = bytes([payload[0] ^ 1]) + payload[1:]
    server.fault(path, body=bad)
    with pytest.raises(DownloadError) as err:
        fetch_file(remote, tmp_path, **FAST)
    msg = str(err.value)
    assert hashlib.sha256(bad).hexdigest() in msg and remote.sha256 in msg
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(("status", "words"), [(404, "not there"), (403, "wants a login"), (401, "wants a login")])
def test_http_errors_name_the_url_and_the_fix(served, tmp_path: Path, status: int, words: str) -> None:
    server, remote, path = served
    server.fault(path, status=status, status_times=None)
    with pytest.raises(DownloadError) as err:
        fetch_file(remote, tmp_path, **FAST)
    msg = str(err.value)
    assert f"{server.url}{path}: HTTP {status}" in msg and words in msg and "Fix:" in msg
    assert len(gets(server, path)) == 1


def test_missing_file_on_the_server_is_a_404(http_mirror, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch_file(pinned(b"abc"), tmp_path, **FAST)


def test_tokens_in_urls_are_not_printed(http_mirror, tmp_path: Path) -> None:
    url = "https://files.example.org/f.bin?token=s3cr3t"
    http_mirror.fault(http_mirror.mirror_path(url), status=403, status_times=None)
    http_mirror.serve_url(url, b"abc")
    with pytest.raises(DownloadError) as err:
        fetch_file(pinned(b"abc", url, name="f.bin"), tmp_path, **FAST)
    assert "s3cr3t" not in str(err.value) and "token=" in str(err.value)


def test_next_mirror_is_tried_when_one_fails(http_mirror, tmp_path: Path, payload: bytes) -> None:
    urls = ("https://a.example.org/blob.bin", "https://b.example.org/x/blob.bin")
    bad = http_mirror.serve_url(urls[0], payload)
    good = http_mirror.serve_url(urls[1], payload)
    http_mirror.fault(bad, drop_after=3 * CHUNK, body=b"\0" * len(payload))  # partial junk, then sha mismatch
    result = fetch_file(pinned(payload, *urls), tmp_path, **FAST)
    assert result.url == f"{http_mirror.url}{good}"
    assert (tmp_path / "blob.bin").read_bytes() == payload


# --- never touch user data; disk space -------------------------------------------------------
@pytest.mark.parametrize("content", [b"my own notes", None], ids=["other-size", "same-size"])
def test_existing_different_file_is_reported_not_overwritten(served, tmp_path: Path, payload: bytes, content) -> None:
    server, remote, path = served
    content = content if content is not None else b"\1" * len(payload)
    (tmp_path / "blob.bin").write_bytes(content)
    with pytest.raises(ExistingFileDiffers) as err:
        fetch_file(remote, tmp_path, **FAST)
    assert str(tmp_path / "blob.bin") in str(err.value) and "left untouched" in str(err.value)
    assert (tmp_path / "blob.bin").read_bytes() == content
    assert gets(server, path) == []


def test_free_disk_space_is_checked_first(served, tmp_path: Path) -> None:
    server, remote, path = served
    with pytest.raises(NotEnoughSpace, match="not enough disk space for blob.bin"):
        fetch_file(remote, tmp_path, required_bytes=10**18, **FAST)
    assert server.log == [] and leftovers(tmp_path) == []


# --- progress --------------------------------------------------------------------------------
class RecordingBar:
    def __init__(self, events: list, desc: str, total: int, unit: str) -> None:
        self.events = events
        events.append(("start", desc, total, unit))

    def update(self, n: int) -> None:
        self.events.append(("update", n))

    def reset(self, pos: int) -> None:
        self.events.append(("reset", pos))

    def note(self, line: str) -> None:
        self.events.append(("note", line))

    def close(self, message: str) -> None:
        self.events.append(("close", message))


def test_progress_sink_is_injectable(served, tmp_path: Path, payload: bytes) -> None:
    server, remote, path = served
    server.fault(path, drop_after=3 * CHUNK + 7, ignore_range=True)
    events: list = []
    fetch_file(remote, tmp_path, **{**FAST, "progress": lambda *a: RecordingBar(events, *a)})
    assert events[0] == ("start", "blob.bin", len(payload), "B")
    assert ("reset", 0) in events
    after_reset = events[events.index(("reset", 0)) + 1:]
    assert sum(e[1] for e in after_reset if e[0] == "update") == len(payload)
    assert events[-1][0] == "close" and events[-1][1].startswith("fetched blob.bin (976.6 KiB in ")


def test_without_a_terminal_one_line_per_artifact(served, tmp_path: Path, capsys) -> None:
    server, remote, path = served
    fetch_file(remote, tmp_path, **{**FAST, "progress": "auto"})
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fetched blob.bin (976.6 KiB in ")


# --- the real pins against the reference files -----------------------------------------------
REFERENCE_NAMES = {
    "class_index": "imagenet_class_index.json",
    "simple_labels": "imagenet-simple-labels.json",
    "val_synsets": "ILSVRC2012_val_synsets.txt",
}


def test_real_imagenet_meta_pins_match_the_reference_files(http_mirror, tmp_path: Path, reference_imagenet) -> None:
    for key, remote in IMAGENET_META_FILES.items():
        http_mirror.serve_url(remote.urls[0], reference_imagenet / REFERENCE_NAMES[key])
    for remote in IMAGENET_META_FILES.values():
        result = fetch_file(remote, tmp_path / "imagenet_meta", **FAST)
        assert not result.already_present and result.path.name == remote.filename
        assert hashlib.sha256(result.path.read_bytes()).hexdigest() == remote.sha256
    assert sorted(leftovers(tmp_path / "imagenet_meta")) == sorted(r.filename for r in IMAGENET_META_FILES.values())
    assert len(http_mirror.requests(method="GET")) == len(IMAGENET_META_FILES)


def test_class_index_falls_back_to_its_legacy_mirror(http_mirror, tmp_path: Path, reference_imagenet) -> None:
    remote = IMAGENET_META_FILES["class_index"]
    http_mirror.serve_url(remote.urls[1], reference_imagenet / "imagenet_class_index.json")  # urls[0] -> 404
    result = fetch_file(remote, tmp_path, **FAST)
    assert result.url == mirrored(remote.urls[1])


# --- the fake server itself ------------------------------------------------------------------
def test_fake_server_speaks_head_and_ranges(tmp_path: Path) -> None:
    import requests

    (tmp_path / "h.org" / "d").mkdir(parents=True)
    (tmp_path / "h.org" / "d" / "f.bin").write_bytes(bytes(range(100)))
    with FakeHTTPServer(root=tmp_path) as server:
        url = f"{server.url}/h.org/d/f.bin"
        head = requests.head(url)
        assert (head.status_code, head.headers["Content-Length"], head.content) == (200, "100", b"")
        part = requests.get(url, headers={"Range": "bytes=10-19"})
        assert (part.status_code, part.headers["Content-Range"], part.content) == (206, "bytes 10-19/100",
                                                                                    bytes(range(10, 20)))
        assert requests.get(url, headers={"Range": "bytes=-5"}).content == bytes(range(95, 100))
        assert requests.get(url, headers={"Range": "bytes=100-"}).status_code == 416
        assert requests.get(url, headers={"Range": "bytes=90-", "If-Range": '"other"'}).status_code == 200
        assert requests.get(f"{server.url}/h.org/../etc/passwd").status_code == 404
        assert [(r.method, r.range, r.status) for r in server.requests()][:2] == [("HEAD", None, 200),
                                                                                 ("GET", "bytes=10-19", 206)]


# --- issue 9: every byte counts (defect 1) ---------------------------------------------------
def test_small_file_dropped_repeatedly_resumes_from_every_byte_received(http_mirror, tmp_path: Path) -> None:
    """The issue's case: 500,000 bytes, cut at 400,000 (five times); the default buffer is bigger than the file."""
    data = os.urandom(500_000)
    path = http_mirror.serve_url(URL, data)
    http_mirror.fault(path, drop_after=400_000, drop_times=5)
    result = fetch_file(pinned(data), tmp_path, attempts=5, backoff=0.001, progress=None)
    assert (tmp_path / "blob.bin").read_bytes() == data
    assert [r.range for r in gets(http_mirror, path)] == [None, "bytes=400000-"]
    assert result.bytes_downloaded == len(data)


def test_every_response_cut_still_completes_while_each_one_adds_bytes(http_mirror, tmp_path: Path) -> None:
    data = os.urandom(500_000)
    path = http_mirror.serve_url(URL, data)
    http_mirror.fault(path, drop_after=100_000, drop_times=None)  # every response cut after 100,000 bytes
    fetch_file(pinned(data), tmp_path, attempts=2, backoff=0.001, progress=None)  # progress resets the budget
    assert (tmp_path / "blob.bin").read_bytes() == data
    assert [r.range for r in gets(http_mirror, path)] == [None] + [f"bytes={n}-" for n in range(100_000, 500_000,
                                                                                                 100_000)]


@pytest.mark.parametrize("drop", [None, 120_000], ids=["whole", "dropped"])
def test_chunked_body_is_received_and_resumed(served, tmp_path: Path, payload: bytes, drop) -> None:
    server, remote, path = served
    server.fault(path, chunked=True, drop_after=drop)
    fetch_file(remote, tmp_path, **FAST)
    assert (tmp_path / "blob.bin").read_bytes() == payload
    assert [r.range for r in gets(server, path)] == ([None] if drop is None else [None, f"bytes={drop}-"])


def test_chunked_body_longer_than_the_pin_is_refused(http_mirror, tmp_path: Path, payload: bytes) -> None:
    path = http_mirror.serve_url(URL, payload + b"more")
    http_mirror.fault(path, chunked=True)
    with pytest.raises(DownloadError, match="wrong size: got more than 1,000,000 bytes"):
        fetch_file(pinned(payload), tmp_path, **FAST)
    assert leftovers(tmp_path) == []


# --- issue 9: the stall limit and the retry line (defect 2) ----------------------------------
def retry_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "next try in" in line]


def test_a_dripping_server_ends_the_attempt_after_the_stall_limit(http_mirror, tmp_path: Path, capsys) -> None:
    data = os.urandom(200_000)
    path = http_mirror.serve_url(URL, data)
    http_mirror.fault(path, drip_after=50_000, drip_interval=0.2, drip_times=1)  # then 1 byte per 0.2 s
    t0 = time.monotonic()
    fetch_file(pinned(data), tmp_path, stall_seconds=1, backoff=0.001, progress="auto")
    assert time.monotonic() - t0 < 30  # the drip alone would take 8 hours
    assert (tmp_path / "blob.bin").read_bytes() == data
    first, second = gets(http_mirror, path)
    assert second.range is not None and int(second.range[6:-1]) >= 50_000  # what was received is kept
    err = capsys.readouterr().err
    lines = retry_lines(err)
    assert len(lines) == 1, err
    assert lines[0].startswith("blob.bin: stalled: less than 16.0 KiB in 1.0 s") and "resuming at 48.8 KiB" in lines[0]
    assert err.count("\n") == 2 and "fetched blob.bin (195.3 KiB in" in err  # the retry line and the summary


def test_a_server_that_only_drips_gives_up_within_bounds(http_mirror, tmp_path: Path, capsys) -> None:
    data = os.urandom(100_000)
    path = http_mirror.serve_url(URL, data)
    http_mirror.fault(path, drip_after=0, drip_interval=0.1)  # every response: 1 byte per 0.1 s
    t0 = time.monotonic()
    with pytest.raises(DownloadError) as err:
        fetch_file(pinned(data), tmp_path, stall_seconds=0.5, attempts=3, backoff=0.001, progress="auto")
    assert time.monotonic() - t0 < 30
    assert "gave up after 3 attempts in a row without progress" in str(err.value)  # a drip is not progress
    assert "last error: stalled: less than 16.0 KiB in 0.5 s" in str(err.value)
    assert len(gets(http_mirror, path)) == 3
    assert len(retry_lines(capsys.readouterr().err)) == 2  # one line per retry, none for the final failure
    assert leftovers(tmp_path) == []


def test_whole_fetch_is_bounded_by_max_seconds(http_mirror, tmp_path: Path) -> None:
    data = os.urandom(1_000_000)
    path = http_mirror.serve_url(URL, data)
    http_mirror.fault(path, delay=0.3)  # 256 KiB per 0.3 s: slow but never stalled
    with pytest.raises(DownloadError, match="the time limit for this file ran out"):
        fetch_file(pinned(data), tmp_path, max_seconds=0.5, **FAST)
    assert len(gets(http_mirror, path)) == 1 and leftovers(tmp_path) == []


def test_stall_seconds_option_env_and_errors(monkeypatch) -> None:
    from fetchers.download import default_stall_seconds
    from preflight_core.options import OPTIONS, OptionError, resolve

    opt = OPTIONS["stall-seconds"]
    assert (opt.flag, opt.env, opt.ini, opt.default) == ("--stall-seconds", "PREFLIGHT_STALL_SECONDS",
                                                        "preflight_stall_seconds", 60.0)
    assert resolve(opt, "2.5", {}).value == 2.5
    assert resolve(opt, None, {}, ini="7").value == 7.0
    for bad in ("0", "-1", "abc", "inf", ""):
        if bad:
            with pytest.raises(OptionError, match=r"invalid value .* for --stall-seconds \(from command line"
                                                  r".*expected a positive number of seconds"):
                resolve(opt, bad, {})
    monkeypatch.delenv("PREFLIGHT_STALL_SECONDS", raising=False)
    assert default_stall_seconds() == 60.0
    monkeypatch.setenv("PREFLIGHT_STALL_SECONDS", "3")
    assert default_stall_seconds() == 3.0
    monkeypatch.setenv("PREFLIGHT_STALL_SECONDS", "soon")
    with pytest.raises(DownloadError) as err:
        default_stall_seconds()
    assert "environment variable PREFLIGHT_STALL_SECONDS" in str(err.value) and "Fix: set" in str(err.value)


# --- issue 9: Retry-After (defect 3) ---------------------------------------------------------
@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_retry_after_is_honoured(served, tmp_path: Path, payload: bytes, capsys, status: int, form: str) -> None:
    import email.utils

    server, remote, path = served
    header = "1" if form == "seconds" else email.utils.formatdate(time.time() + 3, usegmt=True)  # 1 s resolution
    server.fault(path, status=status, status_times=1, retry_after=header)
    t0 = time.monotonic()
    fetch_file(remote, tmp_path, **{**FAST, "progress": "auto"})  # the backoff alone would wait 1 ms
    waited = time.monotonic() - t0
    assert waited >= 1.0
    assert waited < 60
    assert [r.status for r in gets(server, path)] == [status, 200]
    (line,) = retry_lines(capsys.readouterr().err)
    assert f"HTTP {status}" in line and f"Retry-After {header}" in line


def test_retry_after_is_capped(served, tmp_path: Path, capsys) -> None:
    server, remote, path = served
    server.fault(path, status=503, status_times=1, retry_after="3600")
    t0 = time.monotonic()
    fetch_file(remote, tmp_path, retry_after_cap=0.5, **{**FAST, "progress": "auto"})
    assert 0.5 <= time.monotonic() - t0 < 60
    (line,) = retry_lines(capsys.readouterr().err)
    assert "next try in 0.5 s" in line


def test_unparsable_retry_after_falls_back_to_the_backoff(served, tmp_path: Path) -> None:
    from fetchers.download import parse_retry_after

    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("soon") is None and parse_retry_after("") is None and parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: at once
    server, remote, path = served
    server.fault(path, status=503, status_times=1, retry_after="soon")
    fetch_file(remote, tmp_path, **FAST)
    assert [r.status for r in gets(server, path)] == [503, 200]


# --- issue 9: a symlink at the destination is user data (defect 7) ---------------------------
def test_dangling_symlink_at_the_destination_is_left_and_reported(served, tmp_path: Path) -> None:
    server, remote, path = served
    target = tmp_path / "elsewhere" / "blob.bin"
    (tmp_path / "blob.bin").symlink_to(target)
    with pytest.raises(ExistingFileDiffers) as err:
        fetch_file(remote, tmp_path, **FAST)
    msg = str(err.value)
    assert f"is a symlink to {target}, which does not exist" in msg and "nothing was downloaded" in msg
    assert f"Fix: if {target} should hold blob.bin, put the file there; otherwise move the link aside" in msg
    assert os.readlink(tmp_path / "blob.bin") == str(target) and not target.exists()
    assert gets(server, path) == []


def test_live_symlink_to_another_file_is_left_and_reported(served, tmp_path: Path) -> None:
    server, remote, path = served
    target = tmp_path / "mine.bin"
    target.write_bytes(b"my own data")
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "blob.bin").symlink_to(target)
    with pytest.raises(ExistingFileDiffers) as err:
        fetch_file(remote, tmp_path / "dest", **FAST)
    assert f"({'a symlink to ' + str(target)}) already exists but is not the pinned blob.bin" in str(err.value)
    assert os.readlink(tmp_path / "dest" / "blob.bin") == str(target) and target.read_bytes() == b"my own data"
    assert gets(server, path) == []


def test_live_symlink_to_the_pinned_file_counts_as_present(served, tmp_path: Path, payload: bytes) -> None:
    server, remote, path = served
    target = tmp_path / "shared.bin"
    target.write_bytes(payload)
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "blob.bin").symlink_to(target)
    assert fetch_file(remote, tmp_path / "dest", **FAST).already_present
    assert os.readlink(tmp_path / "dest" / "blob.bin") == str(target)
    assert gets(server, path) == []


def test_symlink_appearing_during_the_download_is_not_replaced(served, tmp_path: Path) -> None:
    server, remote, path = served
    server.fault(path, delay=0.2)  # about a second for the whole body
    planted = tmp_path / "nowhere"

    def plant() -> None:
        deadline = time.monotonic() + 20
        while not any(p.stat().st_size for p in tmp_path.glob(".blob.bin.*.part")) and time.monotonic() < deadline:
            time.sleep(0.01)
        (tmp_path / "blob.bin").symlink_to(planted)

    t = threading.Thread(target=plant)
    t.start()
    with pytest.raises(ExistingFileDiffers, match="a dangling link"):
        fetch_file(remote, tmp_path, **FAST)
    t.join(30)
    assert os.readlink(tmp_path / "blob.bin") == str(planted)
    assert leftovers(tmp_path) == ["blob.bin"]  # the link; no temp file


def test_dangling_symlink_as_the_destination_folder_is_reported(served, tmp_path: Path) -> None:
    server, remote, path = served
    (tmp_path / "meta").symlink_to(tmp_path / "gone")
    with pytest.raises(DownloadError) as err:
        fetch_file(remote, tmp_path / "meta", **FAST)
    assert "dangling symlink" in str(err.value) and "Fix: move it aside" in str(err.value)
    assert os.readlink(tmp_path / "meta") == str(tmp_path / "gone")


# --- issue 9: one message per failure, IEC units (defect 9, the download half) ---------------
def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed when the with ends: nothing listens there


SOUP = ("Max retries exceeded", "HTTPConnectionPool", "Caused by", "urllib3", "object at 0x", "Errno", "see above")


def test_connection_refused_is_one_clean_message_without_retries(monkeypatch, tmp_path: Path, capsys) -> None:
    """Issue 15.6: a refused connection is not retried (it was 5 attempts per URL, ~30 s a file): one line, at once."""
    monkeypatch.setenv("PREFLIGHT_MIRROR", f"http://127.0.0.1:{_closed_port()}")
    remote = pinned(b"x" * 35_363, "https://a.example.org/blob.bin", "https://b.example.org/blob.bin")
    with pytest.raises(DownloadError) as err:
        fetch_file(remote, tmp_path, progress="auto")  # the default attempts and backoff
    msg = str(err.value)
    assert not [s for s in SOUP if s in msg], msg
    assert "\n" not in msg and msg.count("Fix:") == 1 and msg.count("connection refused") == 2, msg
    assert msg.startswith("could not download blob.bin (34.5 KiB) from any of its 2 URLs: http://127.0.0.1:")
    assert "attempts" not in msg
    assert err.value.fix.text.startswith("check the network, proxy (HTTPS_PROXY) and DNS")
    err_text = capsys.readouterr().err
    assert not retry_lines(err_text) and "trying the next URL" not in err_text, err_text


def test_failure_on_every_mirror_is_one_message_naming_each(http_mirror, tmp_path: Path, payload: bytes) -> None:
    urls = ("https://a.example.org/blob.bin", "https://b.example.org/blob.bin")
    http_mirror.serve_url(urls[1], payload)
    http_mirror.fault(http_mirror.mirror_path(urls[1]), status=403, status_times=None)
    with pytest.raises(DownloadError) as err:
        fetch_file(pinned(payload, *urls), tmp_path, **FAST)
    msg = str(err.value)
    assert "\n" not in msg and msg.count("Fix:") == 1
    assert "from any of its 2 URLs" in msg and "a.example.org/blob.bin: HTTP 404" in msg
    assert "b.example.org/blob.bin: HTTP 403" in msg
    assert "find its new URL" in err.value.fix.text and "by hand (logged in)" in err.value.fix.text


def test_messages_use_iec_units(served, tmp_path: Path) -> None:
    server, remote, path = served
    with pytest.raises(NotEnoughSpace) as err:
        fetch_file(remote, tmp_path, required_bytes=10**18, **FAST)
    assert " GiB" in str(err.value) and " MB" not in str(err.value) and " GB" not in str(err.value)
    events: list = []
    small = os.urandom(35_363)
    server.serve_url("https://files.example.org/small.json", small)
    server.fault("/files.example.org/small.json", drop_after=20_000)
    fetch_file(pinned(small, "https://files.example.org/small.json", name="small.json"), tmp_path,
               **{**FAST, "progress": lambda *a: RecordingBar(events, *a)})
    notes = [e[1] for e in events if e[0] == "note"]
    assert len(notes) == 1 and "resuming at 19.5 KiB of 34.5 KiB" in notes[0], notes
    assert events[-1][1].startswith("fetched small.json (34.5 KiB in ")


def test_terminal_progress_bar_shows_iec_units(capsys) -> None:
    from fetchers.download import tqdm_progress

    bar = tqdm_progress("imagenet_class_index.json", 35_363, "B")
    bar.update(20_000)
    bar.note("a retry line")
    bar.update(15_363)
    bar.close("")
    err = capsys.readouterr().err
    assert "34.5 KiB of 34.5 KiB" in err and "iB/s" in err and "a retry line\n" in err
    assert not [u for u in (" MB", " kB", "0.0 MB", "MB/s") if u in err], err


@pytest.fixture
def tiny_filesystem(tmp_path: Path):
    """A 512 KiB tmpfs (root only): a disk that really fills up mid-download."""
    folder = tmp_path / "small disk"
    folder.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(folder)],
                                           capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs needs root")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_disk_full_mid_download_names_the_folder_in_the_fix(served, tiny_filesystem: Path) -> None:
    """Issue 17.8: the fix read `df -h ` with an empty path; it names the folder being written, quoted."""
    server, remote, path = served  # 1 MB onto a 512 KiB disk, past the free-space check (as if it filled meanwhile)
    dest = tiny_filesystem / "meta"
    with pytest.raises(DownloadError) as err:
        fetch_file(remote, dest, required_bytes=0, **FAST)
    assert "no space left on the device" in err.value.message and str(dest) in err.value.message, err.value.message
    assert f"`{shlex.join(['df', '-h', str(dest)])}`" in err.value.fix.text, err.value.fix
    assert not [p for p in dest.iterdir() if p.name.endswith(".part")]  # the temp file is gone


def test_an_immutable_folder_names_the_folder_for_lsattr(served, tmp_path: Path) -> None:
    """Issue 17.9: the fix said `lsattr -d` on the lock file, which does not exist; it names the folder."""
    server, remote, path = served
    folder = tmp_path / "meta"
    folder.mkdir()
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
        pytest.skip("chattr +i is not supported here")
    try:
        with pytest.raises(DownloadError) as err:
            fetch_file(remote, folder, **FAST)
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    assert f"`{shlex.join(['lsattr', '-d', str(folder)])}`" in err.value.fix.text, err.value.fix
    assert ".lock`" not in err.value.fix.text
