"""A local HTTP server on 127.0.0.1 for the dataset tests: serves files in the exact upstream formats,
with the failure modes real hosts show (corrupt bytes, a truncated transfer, an HTTP 202, the server
down), and a minimal DANDI archive API (the endpoints the ``dandi`` client calls to resolve an asset by
path and version and download it with resume).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit


class LocalServer:
    """Serve ``files`` (URL path → bytes) with per-path failure ``modes``:

    * ``"ok"`` (default): the bytes, with Content-Length, honouring ``Range: bytes=N-``;
    * ``"corrupt"``: the same length of wrong bytes;
    * ``"truncate"``: announce the full length, send half, close the connection (every time);
    * ``"truncate-once"``: like ``"truncate"`` on the first request, then ``"ok"`` (resume works);
    * ``"status-202"``: answer 202 Accepted with an HTML body (figshare's failure, hc11.md §4).
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.json: dict[str, object] = {}
        self.modes: dict[str, str] = {}
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        self._truncated_once: set[str] = set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                return None

            def do_HEAD(self) -> None:
                self._serve(head=True)

            def do_GET(self) -> None:
                self._serve(head=False)

            def _serve(self, head: bool) -> None:
                parts = urlsplit(self.path)
                path = parts.path
                server.requests.append((self.command, self.path, self.headers.get("Range")))
                key = path + ("?" + parts.query if parts.query else "")
                if key in server.json or path in server.json:
                    payload = server.json.get(key, server.json.get(path))
                    if callable(payload):
                        payload = payload(parse_qs(parts.query))
                    if payload is None:
                        return self._send(404, b'{"detail": "Not found."}', "application/json", head)
                    return self._send(200, json.dumps(payload).encode(), "application/json", head)
                if path not in server.files:
                    return self._send(404, b"not found", "text/plain", head)
                data = server.files[path]
                mode = server.modes.get(path, "ok")
                if mode == "status-202":
                    return self._send(202, b"<html>Your download is being prepared</html>", "text/html", head)
                if mode == "corrupt":
                    data = hashlib.sha256(data).digest() * (len(data) // 32 + 1)
                    data = data[: len(server.files[path])]
                start = 0
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes=") and mode in ("ok", "truncate-once"):
                    start = int(rng[6:].split("-")[0])
                body = data[start:]
                truncate = mode == "truncate" or (mode == "truncate-once" and path not in server._truncated_once)
                self.send_response(206 if start else 200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                if truncate:
                    self.send_header("Connection", "close")
                self.end_headers()
                if head:
                    return
                if truncate:
                    server._truncated_once.add(path)
                    self.wfile.write(body[: max(1, len(body) // 2)])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def _send(self, code: int, body: bytes, ctype: str, head: bool) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Shut the server down; later connections to its port are refused."""
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- a minimal DANDI archive API -------------------------------------------------------------

    def add_dandi_asset(self, dandiset: str, version: str, asset_path: str, content_file: Path, asset_id: str = "0a1b2c3d-asset") -> dict:
        """Publish ``content_file`` as asset ``asset_path`` of ``dandiset``/``version`` under ``/api``.

        Returns the asset's digests as the archive reports them (dandi-etag and sha256).
        """
        from dandischema.digests.dandietag import DandiETag

        data = Path(content_file).read_bytes()
        sha256 = hashlib.sha256(data).hexdigest()
        etag = DandiETag.from_file(content_file).as_str()
        stamp = "2025-06-24T04:26:00.000000Z"
        api = f"{self.url}/api"
        version_info = {
            "version": version, "name": "hc-11 stand-in", "asset_count": 1, "size": len(data),
            "created": stamp, "modified": stamp, "status": "Published",
        }
        draft = {**version_info, "version": "draft", "status": "Valid"}
        asset = {"asset_id": asset_id, "path": asset_path, "size": len(data), "created": stamp, "modified": stamp, "blob": "blob-" + sha256[:12], "zarr": None}
        metadata = {
            "id": f"dandiasset:{asset_id}", "path": asset_path, "contentSize": len(data), "blobDateModified": stamp,
            "digest": {"dandi:dandi-etag": etag, "dandi:sha2-256": sha256},
        }
        server_info = {
            "version": "0.0.0-test", "schema_version": "0.6.10", "schema_url": "",
            "services": {"api": {"url": api}, "webui": {"url": self.url}, "jupyterhub": {"url": self.url}},
            "cli-minimal-version": "0.0.0", "cli-bad-versions": [],
        }
        base = f"/api/dandisets/{dandiset}"
        vbase = f"{base}/versions/{version}"

        def assets_page(query: dict) -> dict:
            prefix = (query.get("path") or [""])[0]
            results = [asset] if asset_path.startswith(prefix) else []
            return {"count": len(results), "next": None, "previous": None, "results": results}

        self.json.update({
            "/server-info": server_info,
            "/api/info/": server_info,
            f"{base}/": {
                "identifier": dandiset, "created": stamp, "modified": stamp, "contact_person": "Test",
                "embargo_status": "OPEN", "most_recent_published_version": version_info, "draft_version": draft,
            },
            f"{vbase}/info/": {**version_info, "dandiset": {"identifier": dandiset}, "metadata": {}},
            f"{vbase}/assets/": assets_page,
            f"{vbase}/assets/{asset_id}/": metadata,
            f"{vbase}/assets/{asset_id}/info/": {**asset, "metadata": metadata},
            f"/api/assets/{asset_id}/": metadata,
            f"/api/assets/{asset_id}/info/": {**asset, "metadata": metadata},
        })
        self.files[f"/api/assets/{asset_id}/download/"] = data
        self.files[f"{vbase}/assets/{asset_id}/download/"] = data
        return {"sha256": sha256, "dandi-etag": etag, "size": len(data), "asset_id": asset_id}


def wait_closed(port: int, timeout: float = 2.0) -> None:
    """Wait until nothing accepts connections on ``port`` any more."""
    import socket

    end = time.time() + timeout
    while time.time() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.05)
