"""kill -9 of a serving process in the middle of a burst of HTTP writes: after a restart every
acknowledged write is there, and the store, the vectors and the lexical index agree."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from prodsearch.search.engine import Engine

TESTS = Path(__file__).resolve().parents[1]
TOKEN = "crash-test-token-123"
SERVE = """
import sys
sys.path.insert(0, {tests!r})
from fakes import fake_embedder
from prodsearch.service.app import run_server
run_server({index!r}, port={port}, embedder=fake_embedder())
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(index: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "PRODSEARCH_API_TOKEN": TOKEN}
    code = SERVE.format(tests=str(TESTS), index=str(index), port=port)
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server died: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("server did not start")


@pytest.mark.parametrize("kill_after", [7, 16])
def test_kill_9_during_http_write_burst_loses_no_acknowledged_write(tiny_index, fake_embedder, kill_after):
    port = free_port()
    proc = serve(tiny_index, port)
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    present: dict[str, str] = {}  # acknowledged upserts: id -> title
    deleted: set[str] = set()  # acknowledged deletes
    acked = threading.Event()
    count = {"n": 0}

    def burst() -> None:
        with httpx.Client(timeout=10) as client:
            for i in range(200):
                try:
                    if i % 3 == 2:
                        victim = f"b{i - 2}"
                        r = client.delete(f"{base}/products/{victim}", headers=headers)
                        if r.status_code == 200:
                            deleted.add(victim)
                            present.pop(victim, None)
                    else:
                        title = f"burst item {i} zq{i}x"
                        r = client.post(
                            f"{base}/products", json={"id": f"b{i}", "title": title}, headers=headers
                        )
                        if r.status_code == 200:
                            present[f"b{i}"] = title
                except httpx.HTTPError:
                    return  # the server is gone
                count["n"] += 1
                if count["n"] >= kill_after:
                    acked.set()

    writer = threading.Thread(target=burst)
    writer.start()
    assert acked.wait(60)
    proc.send_signal(signal.SIGKILL)  # a write is usually in flight now
    proc.wait(30)
    writer.join(30)
    assert present and len(present) + len(deleted) >= kill_after * 2 // 3 - 1

    engine = Engine.open(tiny_index, embedder=fake_embedder)
    try:
        ids = {p.id for p in engine.store.iter_products()}
        assert set(present) <= ids and not (deleted & ids)
        iid = dict(zip(ids, engine.store.iid_of(list(ids)), strict=True))
        live = set(iid.values())
        assert set(engine.vectors["text"].iids.tolist()) == live
        assert set(engine.lexical.iids.tolist()) == live
        for pid, title in present.items():
            hits = engine.search(title.split()[-1], k=3, mode="lexical").results
            assert [h.id for h in hits][:1] == [pid]
    finally:
        engine.close()
