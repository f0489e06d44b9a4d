"""The Liveness recipes of docs/recipes.md, run with the real libraries under the entrypoint.

Each recipe's code is taken from the page itself (a fenced block whose first
line names its file), written next to a small app of the test's own, and run
as the worker against a private redis-server. Each test shows what the
heartbeat proves: READY=1 where the recipe says it, no restart while a job
spans several watchdog timeouts and the heartbeat goes on, and a restart when
what the heartbeat watches stops (a frozen worker, a blocked event loop, a
job longer than the limit). Laravel and Sidekiq do not install here: their
mechanism is run with plain `php` and `ruby`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ROOT, Running, sleep_until
from tests.liveness_helpers import PrivateRedis, Worker
from tests.servers import missing

RECIPES = ROOT / "docs" / "recipes.md"
NODE_DIR = ROOT / "tests" / "node"
BLOCK = re.compile(
    r"^```(?:python|js|php|ruby)\n(?:#|//) (?P<name>[\w./-]+)\n(?P<body>.*?)^```$", re.S | re.M
)


def recipe(name: str) -> str:
    """The code of the recipe whose block starts with a comment naming `name`."""
    found = {m["name"]: f"# {m['name']}\n{m['body']}" for m in BLOCK.finditer(RECIPES.read_text())}
    assert name in found, f"no recipe block named {name} in {RECIPES} (found {sorted(found)})"
    code = found[name]
    return code if name.endswith(".py") else code.replace("# ", "// ", 1)


def require_module(name: str) -> None:
    try:
        __import__(name)
    except ImportError as exc:
        missing(f"{name} is not installed ({exc})")


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.close()


class App:
    """A directory with the recipe and the test's app, importable by the worker."""

    def __init__(self, tmp: Path, redis: PrivateRedis, **env: str) -> None:
        self.dir = tmp / "app"
        self.dir.mkdir()
        self.url = redis.url()
        self.queue = f"liveness-{uuid.uuid4().hex[:8]}"
        self.worker = Worker(
            tmp,
            QUEUE_URL=self.url,
            PYTHONPATH=os.pathsep.join((str(self.dir), str(ROOT))),
            APP_QUEUE=self.queue,
            ENTRYPOINT_STOP_TIMEOUT="3",
            **env,
        )

    def write(self, name: str, code: str) -> Path:
        path = self.dir / name
        path.write_text(textwrap.dedent(code))
        return path

    def python(self, code: str, python: Path | str = sys.executable) -> None:
        """Run `code` beside the app (to enqueue a job), with the worker's environment."""
        subprocess.run(
            [str(python), "-c", textwrap.dedent(code)],
            env=self.worker.env,
            cwd=self.dir,
            check=True,
            timeout=30,
        )

    def run(self, *command: str) -> Running:
        return self.worker.run(command=list(command))


def job_done(path: Path, run: Running, timeout: float = 30) -> None:
    sleep_until(path.exists, timeout)
    assert not run.events("watchdog_expired"), "restarted although the heartbeat went on"


# --- RQ -----------------------------------------------------------------------------


def test_rq_worker_heartbeat(tmp_path: Path, redis: PrivateRedis) -> None:
    require_module("rq")
    app = App(tmp_path, redis, ENTRYPOINT_NOTIFY="1", ENTRYPOINT_WATCHDOG_TIMEOUT="4")
    app.write("rq_liveness.py", recipe("rq_liveness.py"))
    rq = ["rq", "worker", "--url", app.url, "-w", "rq_liveness.NotifyingWorker"]
    # Heartbeats every second: idle (worker-ttl - 15) and while a job runs.
    rq += ["--worker-ttl", "16", "--job-monitoring-interval", "1", app.queue]
    done = tmp_path / "job"
    with app.run(*rq) as run:
        ready = run.wait_event("child_ready", timeout=30)[0]
        assert ready["sender_pid"] == run.events("child_started")[0]["pid"]
        app.python(f"""
            from redis import Redis
            from rq import Queue
            Queue({app.queue!r}, connection=Redis.from_url({app.url!r})).enqueue(
                "tests.rq_jobs.slow", {str(done)!r}, 9.0, job_timeout=60)
        """)
        job_done(Path(str(done) + ".done"), run)  # nine seconds: over two timeouts
        pid = run.events("child_started")[0]["pid"]
        os.kill(pid, signal.SIGSTOP)  # the main loop stops: so do its heartbeats
        expired = run.wait_event("watchdog_expired", timeout=15)[0]
        assert expired["age_s"] >= 4
        run.signal(signal.SIGTERM)
        run.wait(20)


# --- Celery -------------------------------------------------------------------------

CELERY_APP = """
    import os, pathlib, time

    from celery import Celery

    import celery_liveness  # noqa: F401  (connects the signal handlers)

    app = Celery("liveness", broker=os.environ["QUEUE_URL"])
    app.conf.update(broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)


    @app.task(name="slow")
    def slow(path, seconds):
        time.sleep(seconds)
        pathlib.Path(path).touch()
"""


def test_celery_heartbeat_sent(tmp_path: Path, redis: PrivateRedis) -> None:
    require_module("celery")
    app = App(tmp_path, redis, ENTRYPOINT_NOTIFY="1", ENTRYPOINT_WATCHDOG_TIMEOUT="4")
    app.write("celery_liveness.py", recipe("celery_liveness.py"))
    app.write("celery_app.py", CELERY_APP)
    celery = ["celery", "-A", "celery_app", "worker", "--pool", "prefork", "--concurrency", "1"]
    celery += ["--heartbeat-interval", "1", "--without-gossip", "--without-mingle", "-Q", app.queue]
    done = tmp_path / "task-done"
    with app.run(*celery, "--loglevel", "WARNING") as run:
        run.wait_event("child_ready", timeout=60)  # worker_ready
        app.python(f"""
            import celery_app
            celery_app.app.send_task("slow", args=[{str(done)!r}, 9], queue={app.queue!r})
        """)
        job_done(done, run)  # one task of nine seconds, concurrency 1: beats go on
        run.signal(signal.SIGTERM)
        assert run.wait(30) == 0
    assert run.events("child_stopping")  # worker_shutting_down
    assert len(run.events("child_started")) == 1


# --- Huey ---------------------------------------------------------------------------

HUEY_APP = """
    import os, pathlib, time

    from huey_liveness import HeartbeatHuey

    huey = HeartbeatHuey(os.environ["APP_QUEUE"], url=os.environ["QUEUE_URL"])


    @huey.task()
    def slow(path, seconds):
        time.sleep(seconds)
        pathlib.Path(path).touch()
"""


def test_huey_dequeue_heartbeat(tmp_path: Path, redis: PrivateRedis) -> None:
    require_module("huey")
    beat = tmp_path / "beat"
    app = App(tmp_path, redis, ENTRYPOINT_HEARTBEAT_FILE=str(beat), ENTRYPOINT_WATCHDOG_TIMEOUT="3")
    app.write("huey_liveness.py", recipe("huey_liveness.py"))
    app.write("huey_app.py", HUEY_APP)
    done = tmp_path / "short"
    with app.run("huey_consumer", "huey_app.huey", "-w", "1", "-k", "thread", "-g", "TERM") as run:
        sleep_until(beat.exists, 30)
        app.python(f"import huey_app; huey_app.slow({str(done)!r}, 1.5)")
        job_done(done, run)
        sleep_until(lambda: worker_health(app) == 0, 10)
        # One worker, and a task longer than the timeout: no dequeue, no heartbeat.
        app.python(f"import huey_app; huey_app.slow({str(tmp_path / 'long')!r}, 30)")
        expired = run.wait_event("watchdog_expired", timeout=30)[0]
        assert expired["age_s"] >= 3
        run.signal(signal.SIGTERM)
        run.wait(20)


def worker_health(app: App) -> int:
    return app.worker.health().returncode


# --- Dramatiq -----------------------------------------------------------------------

DRAMATIQ_APP = """
    import os, pathlib, time

    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    from dramatiq_liveness import Liveness

    broker = RedisBroker(url=os.environ["QUEUE_URL"], namespace=os.environ["APP_QUEUE"])
    broker.add_middleware(Liveness(every=0.5, max_job_s=4))
    dramatiq.set_broker(broker)


    @dramatiq.actor(max_retries=0)
    def slow(path, seconds):
        time.sleep(seconds)
        pathlib.Path(path).touch()
"""


def test_dramatiq_middleware_heartbeat(tmp_path: Path, redis: PrivateRedis) -> None:
    require_module("dramatiq")
    app = App(tmp_path, redis, ENTRYPOINT_NOTIFY="1", ENTRYPOINT_WATCHDOG_TIMEOUT="3")
    app.write("dramatiq_liveness.py", recipe("dramatiq_liveness.py"))
    app.write("dramatiq_app.py", DRAMATIQ_APP)
    done = tmp_path / "short"
    with app.run("dramatiq", "dramatiq_app", "--processes", "1", "--threads", "1") as run:
        run.wait_event("child_ready", timeout=60)  # after_worker_boot
        app.python(f"import dramatiq_app; dramatiq_app.slow.send({str(done)!r}, 3.5)")
        job_done(done, run)  # longer than the timeout, shorter than max_job_s
        app.python(f"import dramatiq_app; dramatiq_app.slow.send({str(tmp_path / 'stuck')!r}, 60)")
        started = run.events("child_started")[0]
        expired = run.wait_event("watchdog_expired", timeout=30)[0]
        assert expired["age_s"] >= 3
        assert run.events("child_started")[0] == started
        run.signal(signal.SIGTERM)
        run.wait(20)


# --- arq ----------------------------------------------------------------------------

ARQ_APP = """
    import asyncio, os, pathlib, time

    from arq.connections import RedisSettings

    import arq_liveness

    arq_liveness.EVERY_S = 0.5


    async def wait(ctx, path, seconds):
        await asyncio.sleep(seconds)
        pathlib.Path(path).touch()


    async def block(ctx, path, seconds):
        time.sleep(seconds)  # blocking code in a coroutine: the whole loop stalls
        pathlib.Path(path).touch()


    class WorkerSettings:
        functions = [wait, block]
        on_startup = arq_liveness.startup
        on_shutdown = arq_liveness.shutdown
        redis_settings = RedisSettings.from_dsn(os.environ["QUEUE_URL"])
        queue_name = os.environ["APP_QUEUE"]
"""

ARQ_ENQUEUE = """
    import asyncio, os

    from arq import create_pool
    from arq.connections import RedisSettings


    async def main():
        pool = await create_pool(RedisSettings.from_dsn(os.environ["QUEUE_URL"]))
        await pool.enqueue_job({name!r}, {path!r}, {seconds}, _queue_name=os.environ["APP_QUEUE"])
        await pool.aclose()


    asyncio.run(main())
"""


# arq from the test extra, next to this interpreter; ARQ_VENV names another venv.
ARQ_VENV = Path(os.environ.get("ARQ_VENV", Path(sys.executable).parent.parent))


def test_arq_event_loop_heartbeat(tmp_path: Path, redis: PrivateRedis) -> None:
    arq, python = ARQ_VENV / "bin" / "arq", ARQ_VENV / "bin" / "python"
    if not arq.exists():
        missing(f"no arq at {arq}: pip install -e '.[test]'")
    app = App(tmp_path, redis, ENTRYPOINT_NOTIFY="1", ENTRYPOINT_WATCHDOG_TIMEOUT="2")
    app.write("arq_liveness.py", recipe("arq_liveness.py"))
    app.write("arq_app.py", ARQ_APP)
    done = tmp_path / "awaited"
    with app.run(str(arq), "arq_app.WorkerSettings") as run:
        run.wait_event("child_ready", timeout=60)  # on_startup
        app.python(ARQ_ENQUEUE.format(name="wait", path=str(done), seconds=6), python=python)
        job_done(done, run)
        blocked = str(tmp_path / "blocked")
        app.python(ARQ_ENQUEUE.format(name="block", path=blocked, seconds=20), python=python)
        expired = run.wait_event("watchdog_expired", timeout=30)[0]
        assert expired["age_s"] >= 2
        run.signal(signal.SIGTERM)
        run.wait(20)


# --- BullMQ -------------------------------------------------------------------------

BULLMQ_WORKER = """
    import { writeFileSync } from "node:fs";
    import { Worker } from "bullmq";
    import { Redis } from "ioredis";
    import { tellTheEntrypoint } from "./liveness.mjs";

    const connection = new Redis(process.env.QUEUE_URL, { maxRetriesPerRequest: null });
    const worker = new Worker(process.env.APP_QUEUE, async (job) => {
      if (job.name === "busy") {
        const end = Date.now() + job.data.ms;
        while (Date.now() < end) {}  // synchronous: the event loop is blocked
      } else {
        await new Promise((resolve) => setTimeout(resolve, job.data.ms));
      }
      writeFileSync(job.data.path, "");
    }, { connection, concurrency: 1 });
    await tellTheEntrypoint(worker);

    process.once("SIGTERM", async () => {
      await worker.close();
      await connection.quit();
      process.exit(0);
    });
"""

BULLMQ_ENQUEUE = """
    import { Queue } from "bullmq";
    import { Redis } from "ioredis";

    const [name, ms, path] = process.argv.slice(2);
    const connection = new Redis(process.env.QUEUE_URL, { maxRetriesPerRequest: null });
    const queue = new Queue(process.env.APP_QUEUE, { connection });
    await queue.add(name, { ms: Number(ms), path });
    await queue.close();
    await connection.quit();
"""


def test_bullmq_timer_heartbeat_and_ready_after_wait_until_ready(
    tmp_path: Path, redis: PrivateRedis
) -> None:
    node = shutil.which("node")
    if node is None:
        missing("node is not installed")
    assert node is not None
    for package in ("bullmq", "ioredis", "sd-notify"):
        if not (NODE_DIR / "node_modules" / package).is_dir():
            missing(f"tests/node/node_modules/{package} is missing: npm ci --prefix tests/node")
    app = App(tmp_path, redis, ENTRYPOINT_NOTIFY="1", ENTRYPOINT_WATCHDOG_TIMEOUT="2")
    (app.dir / "node_modules").symlink_to(NODE_DIR / "node_modules")
    app.write("liveness.mjs", recipe("liveness.mjs"))
    app.write("worker.mjs", BULLMQ_WORKER)
    enqueue = app.write("enqueue.mjs", BULLMQ_ENQUEUE)

    def add(name: str, ms: int, path: Path) -> None:
        subprocess.run(
            [node, str(enqueue), name, str(ms), str(path)],
            env=app.worker.env,
            check=True,
            timeout=30,
        )

    done = tmp_path / "awaited"
    with app.run(node, str(app.dir / "worker.mjs")) as run:
        ready = run.wait_event("child_ready", timeout=60)[0]  # after waitUntilReady()
        assert ready["sender_pid"] == run.events("child_started")[0]["pid"]
        add("wait", 6000, done)
        job_done(done, run)  # three timeouts of an awaiting job
        add("busy", 20000, tmp_path / "busy")
        expired = run.wait_event("watchdog_expired", timeout=30)[0]
        assert expired["age_s"] >= 2
        run.signal(signal.SIGTERM)
        run.wait(20)


# --- Laravel's mechanism, with plain PHP --------------------------------------------

PHP_WORKER = """
    <?php
    // A worker loop as queue:work runs it: the Looping event, then one job.
    $beat = getenv('ENTRYPOINT_HEARTBEAT_FILE');
    foreach (explode(',', $argv[1]) as $seconds) {
        @touch($beat);  // what the recipe's Looping listener does
        fwrite(STDOUT, "job of {$seconds} s\\n");
        usleep((int) ($seconds * 1000000));
    }
"""


def test_php_loop_touching_the_heartbeat_file(tmp_path: Path) -> None:
    php = shutil.which("php")
    if php is None:
        missing("php is not installed (Debian package php-cli)")
    assert php is not None
    beat = tmp_path / "beat"
    worker = Worker(
        tmp_path,
        ENTRYPOINT_HEARTBEAT_FILE=str(beat),
        ENTRYPOINT_WATCHDOG_TIMEOUT="2",
        ENTRYPOINT_STOP_TIMEOUT="2",
    )
    script = tmp_path / "worker.php"
    script.write_text(textwrap.dedent(PHP_WORKER).lstrip())
    jobs = ",".join(["0.5"] * 10 + ["30"])  # five seconds of short jobs, then one too long
    with worker.run(command=[php, str(script), jobs]) as run:
        run.wait_stdout(r"^job of 30 s$", timeout=30)
        assert not run.events("watchdog_expired")  # 2.5 timeouts of short jobs
        expired = run.wait_event("watchdog_expired", timeout=15)[0]
        assert expired["age_s"] >= 2
        run.signal(signal.SIGTERM)
        run.wait(20)


# --- Sidekiq's mechanism, with plain Ruby -------------------------------------------

RUBY_WORKER = """
    require "socket"

    # What Sidekiq's own sd_notify support does when it finds NOTIFY_SOCKET.
    def sd_notify(message)
      path = ENV.fetch("NOTIFY_SOCKET", "")
      return if path.empty?
      path = "\\0" + path[1..] if path.start_with?("@")
      Socket.open(:UNIX, :DGRAM) { |sock| sock.send(message, 0, Socket.pack_sockaddr_un(path)) }
    end

    mine = ENV["WATCHDOG_PID"].nil? || ENV["WATCHDOG_PID"] == Process.pid.to_s
    every = Integer(ENV.fetch("WATCHDOG_USEC", "0")) / 2_000_000.0
    puts "watchdog #{mine ? 'mine' : 'not mine'} every #{every} s (pid: #{Process.pid})"
    $stdout.flush
    sd_notify("READY=1\\nSTATUS=ruby worker up")
    Thread.new { loop { sd_notify("WATCHDOG=1"); sleep every } } if mine && every > 0
    Signal.trap("TERM") { sd_notify("STOPPING=1"); exit 0 }
    sleep
"""


def test_ruby_sd_notify_to_the_abstract_socket(tmp_path: Path) -> None:
    ruby = shutil.which("ruby")
    if ruby is None:
        missing("ruby is not installed (Debian package ruby)")
    assert ruby is not None
    worker = Worker(tmp_path, ENTRYPOINT_NOTIFY="1", ENTRYPOINT_WATCHDOG_TIMEOUT="1")
    script = tmp_path / "worker.rb"
    script.write_text(textwrap.dedent(RUBY_WORKER))
    with worker.run(command=[ruby, str(script)]) as run:
        said = run.wait_stdout(r"^watchdog (mine|not mine) every ([\d.]+) s \(pid: (\d+)\)")[0]
        assert said.group(1, 2) == ("mine", "0.5")  # WATCHDOG_PID is its own pid
        ready = run.wait_event("child_ready")[0]
        assert ready["sender_pid"] == int(said.group(3))
        assert run.wait_event("child_status")[0]["status"] == "ruby worker up"
        beat = sleep_until(lambda: worker.state().get("heartbeat"), 10)
        sleep_until(lambda: worker.state().get("heartbeat", 0) > beat + 3, 10)
        assert not run.events("watchdog_expired")
        run.signal(signal.SIGTERM)
        assert run.wait() == 0
    assert run.events("child_stopping")
