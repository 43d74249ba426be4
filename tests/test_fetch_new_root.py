"""`--fetch-missing --data-root=NEWDIR` (issue 17.7): the folder is created and fetched into, or the run says why not."""

from __future__ import annotations

import json

from tests.checkrun import CHECKS, clean_environment


def test_fetch_missing_creates_a_new_data_root_and_fills_it(pytester, tmp_path, monkeypatch, http_mirror,
                                                            reference_imagenet):
    clean_environment(monkeypatch)
    monkeypatch.setenv("PREFLIGHT_MIRROR", http_mirror.url)
    from tests.test_fetch_cli import serve_reference_meta

    serve_reference_meta(http_mirror, reference_imagenet)
    root = tmp_path / "new" / "data root"  # does not exist yet, two levels deep
    out = tmp_path / "r.json"
    pytester.runpytest_inprocess(str(CHECKS), "-p", "no:cacheprovider", "-m", "imagenet and not model",
                                 f"--data-root={root}", f"--report-json={out}", "--fetch-missing")
    report = json.loads(out.read_text())
    assert report["problems"] == [], report["problems"]
    row = next(a for a in report["assets"] if a["name"] == "imagenet_meta")
    assert row["status"] == "ready", row
    assert (root / "imagenet_meta" / "ILSVRC2012_val_synsets.txt").is_file()


def test_fetch_missing_says_plainly_when_the_new_root_cannot_be_made(pytester, tmp_path, monkeypatch):
    clean_environment(monkeypatch)
    blocker = tmp_path / "a file"
    blocker.write_text("in the way")
    root = blocker / "data"
    out = tmp_path / "r.json"
    pytester.runpytest_inprocess(str(CHECKS), "-p", "no:cacheprovider", "-m", "imagenet and not model",
                                 f"--data-root={root}", f"--report-json={out}", "--fetch-missing")
    report = json.loads(out.read_text())
    assert report["ok"] is False and len(report["problems"]) == 1
    assert "--fetch-missing could not create it (Not a directory) and fetched nothing" in report["problems"][0]
