"""A real HTTP server on 127.0.0.1 serving good, slow, huge, broken and redirecting images, for the
URL fetcher tests. It counts requests per path, so tests can check retries and the cache."""

from __future__ import annotations

import io
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from catalog_fixtures import make_png_claiming
from PIL import Image


def jpeg_bytes(colour: tuple[int, int, int], size: tuple[int, int] = (40, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "JPEG", quality=90)
    return buf.getvalue()


class ImageServer:
    """``with ImageServer(tmp_path) as srv: srv.url("/good.jpg")``."""

    GOOD = jpeg_bytes((200, 30, 30))
    OTHER = jpeg_bytes((30, 30, 200))

    def __init__(self, tmp_path):
        bomb = make_png_claiming(tmp_path / "bomb.png", 30_000, 30_000).read_bytes()
        big = jpeg_bytes((10, 200, 10), size=(300, 300))
        self.routes = {
            "/good.jpg": (200, self.GOOD),
            "/same-photo-other-url.jpg": (200, self.GOOD),
            "/other.jpg": (200, self.OTHER),
            "/broken.jpg": (200, big[: len(big) // 2]),
            "/not-an-image.jpg": (200, b"<html>sold out</html>"),
            "/bomb.png": (200, bomb),
            "/missing.jpg": (404, b"not found"),
        }
        self.hits: Counter[str] = Counter()
        self.flaky_failures = 2  # /flaky.jpg answers 503 this many times, then the photo
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                path = self.path.split("?")[0]
                with server._lock:
                    server.hits[path] += 1
                    n = server.hits[path]
                if path == "/redirect.jpg":
                    return self._redirect("/good.jpg")
                if path == "/redirect-loop.jpg":
                    return self._redirect("/redirect-loop.jpg")
                if path == "/flaky.jpg":
                    if n <= server.flaky_failures:
                        return self._send(503, b"busy")
                    return self._send(200, server.OTHER)
                if path == "/slow.jpg":  # headers at once, then a byte every 0.2 s
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", str(len(server.GOOD)))
                    self.end_headers()
                    try:
                        for b in server.GOOD:
                            self.wfile.write(bytes([b]))
                            self.wfile.flush()
                            time.sleep(0.2)
                    except OSError:
                        pass
                    return None
                if path == "/huge.jpg":  # announces 200 MB
                    self.send_response(200)
                    self.send_header("Content-Length", str(200 * 1024 * 1024))
                    self.end_headers()
                    try:
                        self.wfile.write(b"\xff" * 65536)
                    except OSError:
                        pass
                    return None
                if path == "/huge-unannounced.jpg":  # no Content-Length, 1 MB streamed
                    self.send_response(200)
                    self.send_header("Connection", "close")
                    self.end_headers()
                    try:
                        for _ in range(16):
                            self.wfile.write(b"\xff" * 65536)
                    except OSError:
                        pass
                    self.close_connection = True
                    return None
                code, body = server.routes.get(path, (404, b"not found"))
                return self._send(code, body)

            def _send(self, code: int, body: bytes):
                self.send_response(code)
                self.send_header("Content-Type", "image/jpeg" if code == 200 else "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _redirect(self, to: str):
                self.send_response(302)
                self.send_header("Location", to)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}{path}"

    def __enter__(self) -> ImageServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
