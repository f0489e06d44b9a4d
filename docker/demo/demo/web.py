"""`python -m demo.web`: enqueue jobs and watch them being processed.

- GET  /         an HTML page: counts, a form, the latest jobs (refreshes itself)
- POST /jobs     enqueue: JSON {"count": n, "seconds": s} or the page's form
- GET  /jobs     JSON list of the latest jobs (`?limit=`, default 200)
- GET  /healthz  200 when the queue answers, 503 otherwise

Listens on HOST:PORT (default 0.0.0.0:8000). SIGTERM or SIGINT: stop accepting,
finish the requests in progress, exit 0.
"""

from __future__ import annotations

import html
import json
import logging
import os
import signal
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from demo.config import QueueConfigError
from demo.lifecycle import fail, setup_logging
from demo.queues import MAX_COUNT, Job, JobQueue, open_queue

if TYPE_CHECKING:
    from types import FrameType

MAX_BODY = 64 * 1024
log = logging.getLogger("demo.web")


class DemoServer(ThreadingHTTPServer):
    daemon_threads = True
    queue: JobQueue


def parse_job_request(content_type: str, body: bytes) -> tuple[int, float]:
    """(count, seconds) from a JSON or form body; ValueError with the reason."""
    if content_type.startswith("application/json"):
        try:
            data = json.loads(body or b"{}")
        except json.JSONDecodeError as exc:
            raise ValueError(f"body is not valid JSON: {exc.msg}") from None
        if not isinstance(data, dict):
            raise ValueError('body must be a JSON object such as {"count": 3, "seconds": 2}')
        raw_count, raw_seconds = data.get("count", 1), data.get("seconds", 1)
    else:
        form = parse_qs(body.decode("utf-8", "replace"))
        raw_count = form.get("count", ["1"])[0]
        raw_seconds = form.get("seconds", ["1"])[0]
    try:
        count = int(raw_count)
        seconds = float(raw_seconds)
    except (TypeError, ValueError):
        raise ValueError("count must be an integer and seconds a number") from None
    return count, seconds


def _cell(value: object) -> str:
    return "" if value is None else html.escape(str(value))


def render_page(queue: JobQueue, jobs: list[Job], counts: dict[str, int]) -> str:
    summary = " · ".join(f"{html.escape(k)}: {v}" for k, v in sorted(counts.items())) or "no jobs"
    workers = sorted({job.worker for job in jobs if job.worker})
    columns = ("id", "kind", "seconds", "status", "worker", "runs", "enqueued_at", "finished_at")
    rows = "\n".join(
        "<tr>" + "".join(f"<td>{_cell(job.as_dict()[name])}</td>" for name in columns) + "</tr>"
        for job in jobs
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<title>entrypoint demo</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.9em; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 0.25em 0.75em; text-align: left; }}
.muted {{ color: #777; }}
</style></head>
<body>
<h1>entrypoint demo</h1>
<p>Queue: <b>{html.escape(queue.kind)}</b>. Jobs: {summary}.
Workers seen: {len(workers)} <span class="muted">{html.escape(", ".join(workers))}</span></p>
<form method="post" action="/jobs">
  Enqueue <input name="count" type="number" min="1" max="{MAX_COUNT}" value="10" size="4"> jobs of
  <input name="seconds" type="number" min="0" step="0.1" value="2" size="4"> seconds
  <button type="submit">Enqueue</button>
</form>
<table>
<tr><th>id</th><th>kind</th><th>seconds</th><th>status</th><th>worker</th><th>runs</th>
<th>enqueued</th><th>finished</th></tr>
{rows}
</table>
<p class="muted">JSON: <a href="/jobs">/jobs</a> · health: <a href="/healthz">/healthz</a></p>
</body></html>
"""


class Handler(BaseHTTPRequestHandler):
    server: DemoServer
    server_version = "demo-web/0.1"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        queue = self.server.queue
        if url.path == "/healthz":
            try:
                queue.ping()
            except Exception as exc:  # noqa: BLE001 - any failure of the queue is "unhealthy"
                self._json(
                    HTTPStatus.SERVICE_UNAVAILABLE,
                    {"status": "unavailable", "queue": queue.kind, "error": type(exc).__name__},
                )
                return
            self._json(HTTPStatus.OK, {"status": "ok", "queue": queue.kind})
        elif url.path == "/jobs":
            try:
                limit = int(parse_qs(url.query).get("limit", ["200"])[0])
            except ValueError:
                self._json(HTTPStatus.BAD_REQUEST, {"error": "limit must be an integer"})
                return
            limit = max(1, min(limit, MAX_COUNT))
            self._json(HTTPStatus.OK, [job.as_dict() for job in queue.jobs(limit)])
        elif url.path == "/":
            page = render_page(queue, queue.jobs(50), queue.counts())
            self._send(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8")
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {url.path}"})

    def do_POST(self) -> None:
        if urlsplit(self.path).path != "/jobs":
            self._json(HTTPStatus.NOT_FOUND, {"error": "POST only to /jobs"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "body too large"})
            return
        content_type = self.headers.get("Content-Type", "")
        try:
            count, seconds = parse_job_request(content_type, self.rfile.read(length))
            jobs = self.server.queue.enqueue(count, seconds)
        except ValueError as exc:
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            return
        log.info("jobs_enqueued count=%d seconds=%g", count, seconds)
        if content_type.startswith("application/json"):
            self._json(HTTPStatus.CREATED, [job.as_dict() for job in jobs])
        else:
            self.send_response(HTTPStatus.SEE_OTHER)
            self.send_header("Location", "/")
            self.send_header("Content-Length", "0")
            self.end_headers()

    def _json(self, status: HTTPStatus, data: Any) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        if self.path != "/healthz":
            log.info("request %s", format % args)


def main() -> int:
    # The handlers come first: in web mode this process is PID 1, and the kernel
    # drops a TERM to PID 1 that has no handler (`docker stop` would then wait
    # for its SIGKILL). A stop before the server exists ends the start.
    stopping = threading.Event()
    servers: list[DemoServer] = []

    def stop(signum: int, _frame: FrameType | None) -> None:
        stopping.set()
        for server in servers:
            # shutdown() waits for serve_forever() to return: call it off the main thread.
            threading.Thread(target=server.shutdown, daemon=True).start()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)
    setup_logging("demo.web")
    try:
        port = int(os.environ.get("PORT", "8000"))
        if not 1 <= port <= 65535:
            raise ValueError(port)
    except ValueError:
        raw = os.environ.get("PORT")
        return fail("demo.web", f"PORT must be a number from 1 to 65535, got {raw!r}", 78)
    try:
        queue = open_queue()
    except QueueConfigError as exc:
        return fail("demo.web", str(exc), 78)
    server = DemoServer((os.environ.get("HOST", "0.0.0.0"), port), Handler)
    server.queue = queue
    servers.append(server)
    host = server.server_address[0]
    if not stopping.is_set():
        # A stop from here on shuts the server down, before or while it serves.
        log.info(
            "web_listening host=%s port=%d queue=%s pid=%d", host, port, queue.kind, os.getpid()
        )
        server.serve_forever(poll_interval=0.5)
    server.server_close()
    log.info("web_stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
