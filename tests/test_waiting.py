"""The wait: retries, deadline, permanent failures, stop signals, logs, and `check`."""

from __future__ import annotations

import inspect
import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from entrypoint import probes
from entrypoint.cli.render import check_json, check_table
from entrypoint.errors import ExitCode, UnavailableError
from entrypoint.plan import deps as deps_module
from entrypoint.plan import urls as urls_module
from entrypoint.plan.urls import Dependency, Depth, parse_url
from entrypoint.probes import ProbeError
from entrypoint.runtime import waiting
from entrypoint.runtime.waiting import Backoff, CheckResult, check, wait_for
from tests.helpers import wait_until
from tests.probe_helpers import FakeInbox, LoopbackServer, closed_port, silent

FAST = Backoff(initial=0.02, maximum=0.05, jitter=0.01)


def dep(url: str = "redis://:S3cret-pw@cache:6379/0", source: str = "QUEUE_URL") -> Dependency:
    return parse_url(url, source)


class Script:
    """A probe function that plays a script per dependency: str = ready, ProbeError = fails.

    The last entry repeats. Counts attempts, records each attempt's timeout.
    """

    def __init__(self, **plays: list[str | ProbeError]) -> None:
        self.plays = plays
        self.attempts: Counter[str] = Counter()
        self.timeouts: list[float] = []
        self.lock = threading.Lock()

    def __call__(self, d: Dependency, timeout: float) -> str:
        with self.lock:
            self.timeouts.append(timeout)
            play = self.plays[d.host]
            step = play[min(self.attempts[d.host], len(play) - 1)]
            self.attempts[d.host] += 1
        if isinstance(step, ProbeError):
            raise step
        return step


def refused() -> ProbeError:
    return ProbeError("connection refused by cache:6379")


def run_wait(
    deps: list[Dependency],
    probe_fn: Callable[[Dependency, float], str],
    *,
    timeout: float = 2.0,
    probe_timeout: float = 0.5,
    inbox: FakeInbox | None = None,
) -> tuple[bool, float]:
    began = time.monotonic()
    result = wait_for(
        deps,
        timeout=timeout,
        probe_timeout=probe_timeout,
        inbox=inbox or FakeInbox(),
        backoff=FAST,
        probe_fn=probe_fn,
    )
    return result, time.monotonic() - began


def test_nothing_to_wait_for_is_ready() -> None:
    assert wait_for([], timeout=1, probe_timeout=1, inbox=FakeInbox()) is True


def test_ready_after_transient_failures_logs_once_then_ready() -> None:
    script = Script(cache=[refused(), refused(), ProbeError("LOADING"), "PONG"])
    with capture_logs() as logs:
        ready, _ = run_wait([dep()], script)
    assert ready is True
    assert script.attempts["cache"] == 4
    events = [e["event"] for e in logs]
    assert events == ["dependency_waiting", "dependency_ready"]
    waiting_event, ready_event = logs
    assert waiting_event["dependency"] == "redis://:***@cache:6379/0"
    assert waiting_event["source"] == "QUEUE_URL"
    assert waiting_event["depth"] == "authenticated"
    assert waiting_event["attempt"] == 1
    assert waiting_event["reason"] == "connection refused by cache:6379"
    assert ready_event["attempts"] == 4
    assert ready_event["detail"] == "PONG"
    assert isinstance(ready_event["latency_ms"], float)


def test_waiting_is_logged_at_most_every_few_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(waiting, "LOG_EVERY", 0.5)
    script = Script(cache=[refused()])
    with capture_logs() as logs, pytest.raises(UnavailableError):
        run_wait([dep()], script, timeout=1.3)
    waits = [e for e in logs if e["event"] == "dependency_waiting"]
    assert script.attempts["cache"] > 10  # many attempts...
    assert 2 <= len(waits) <= 3  # ...few lines: at 0, ~0.5 and ~1.0 s
    assert [e["event"] for e in logs][-1] == "dependency_failed"


def test_permanent_failure_ends_the_wait_at_once() -> None:
    script = Script(
        cache=[ProbeError("AUTH refused: WRONGPASS invalid username-password pair", permanent=True)]
    )
    with capture_logs() as logs, pytest.raises(UnavailableError) as caught:
        run_wait([dep()], script, timeout=30)
    assert script.attempts["cache"] == 1
    error = caught.value
    assert error.exit_code == ExitCode.UNAVAILABLE
    assert str(error) == (
        "QUEUE_URL redis://:***@cache:6379/0 refused (permanent, not retried): "
        "AUTH refused: WRONGPASS invalid username-password pair"
    )
    failed = [e for e in logs if e["event"] == "dependency_failed"]
    assert len(failed) == 1
    assert failed[0]["permanent"] is True
    assert failed[0]["log_level"] == "error"


def test_a_permanent_failure_does_not_wait_for_the_others() -> None:
    script = Script(cache=[ProbeError("no such database", permanent=True)], db=[refused()])
    began = time.monotonic()
    with capture_logs() as logs, pytest.raises(UnavailableError) as caught:
        run_wait([dep("postgresql://db/app"), dep()], script, timeout=30)
    assert time.monotonic() - began < 1.0
    assert [e["event"] for e in logs if e["dependency"].startswith("redis")] == [
        "dependency_failed"
    ]
    assert "no such database" in str(caught.value)
    assert "postgresql://db" not in str(caught.value)


def test_deadline_names_the_dependency_and_the_last_reason() -> None:
    script = Script(cache=[refused(), ProbeError("timed out after 0.5 s (waiting for PONG)")])
    with pytest.raises(UnavailableError) as caught:
        _, _ = run_wait([dep()], script, timeout=1.0)
    message = str(caught.value)
    assert message.startswith("QUEUE_URL redis://:***@cache:6379/0 still unavailable after 1 s (")
    assert message.endswith("attempts): timed out after 0.5 s (waiting for PONG)")


def test_the_deadline_is_respected_and_attempts_shrink_to_fit() -> None:
    script = Script(cache=[refused()])
    began = time.monotonic()
    with pytest.raises(UnavailableError):
        run_wait([dep()], script, timeout=1.0, probe_timeout=3.0)
    elapsed = time.monotonic() - began
    assert 0.9 <= elapsed < 1.3
    assert max(script.timeouts) <= 1.0
    assert min(script.timeouts) >= waiting.MIN_ATTEMPT


def test_timeout_zero_means_one_attempt_each() -> None:
    script = Script(cache=[refused(), "PONG"], db=["ok"])
    with pytest.raises(UnavailableError) as caught:
        run_wait([dep(), dep("postgresql://db/app")], script, timeout=0, probe_timeout=0.7)
    assert script.attempts == Counter(cache=1, db=1)
    assert script.timeouts == [0.7, 0.7]
    assert "one attempt" in str(caught.value)
    assert "postgresql" not in str(caught.value)


def test_dependencies_are_probed_concurrently() -> None:
    def slow(d: Dependency, timeout: float) -> str:
        time.sleep(0.4)  # the probe's own work, standing in for a slow server
        return "ok"

    names = ["a", "b", "c", "d"]
    ready, elapsed = run_wait([dep(f"tcp://{n}:1") for n in names], slow)
    assert ready is True
    assert elapsed < 0.8


def test_stop_signal_returns_false_within_a_second() -> None:
    inbox = FakeInbox()
    script = Script(cache=[refused()])
    outcome: list[bool] = []
    thread = threading.Thread(
        target=lambda: outcome.append(run_wait([dep()], script, timeout=60, inbox=inbox)[0]),
        daemon=True,
    )
    thread.start()
    assert wait_until(lambda: script.attempts["cache"] >= 2, 5)
    sent = time.monotonic()
    inbox.send(signal.SIGTERM)
    thread.join(5)
    assert outcome == [False]
    assert time.monotonic() - sent < 1.0


def test_stop_during_a_blocked_probe_returns_at_once() -> None:
    """A probe stuck in a socket (here: in an Event) never delays the stop."""
    inbox = FakeInbox()
    entered = threading.Event()
    release = threading.Event()

    def stuck(d: Dependency, timeout: float) -> str:
        entered.set()
        release.wait(30)
        return "late"

    def stop_soon() -> None:
        entered.wait(5)
        inbox.send(signal.SIGINT)

    threading.Thread(target=stop_soon, daemon=True).start()
    try:
        ready, elapsed = run_wait([dep()], stuck, timeout=60, probe_timeout=30, inbox=inbox)
    finally:
        release.set()
    assert ready is False
    assert elapsed < 1.0


def test_a_probe_stuck_past_its_timeout_cannot_hold_the_wait() -> None:
    release = threading.Event()

    def stuck(d: Dependency, timeout: float) -> str:
        release.wait(30)  # ignores its timeout, as a driver stuck in C might
        return "late"

    began = time.monotonic()
    try:
        with capture_logs() as logs, pytest.raises(UnavailableError) as caught:
            run_wait([dep()], stuck, timeout=0.5, probe_timeout=0.2)
    finally:
        release.set()
    assert time.monotonic() - began < 0.5 + waiting.GRACE + 0.3
    assert str(caught.value).endswith("(1 attempt): no attempt finished in time")
    assert [e["event"] for e in logs] == ["dependency_failed"]


def test_other_signals_do_not_stop_the_wait() -> None:
    inbox = FakeInbox()
    inbox.send(signal.SIGHUP)
    inbox.send(signal.SIGCHLD)
    ready, _ = run_wait([dep()], Script(cache=[refused(), "PONG"]), inbox=inbox)
    assert ready is True


def test_a_stop_already_received_starts_nothing() -> None:
    inbox = FakeInbox()
    inbox.send(signal.SIGTERM)
    script = Script(cache=["PONG"])
    ready, elapsed = run_wait([dep()], script, inbox=inbox)
    assert ready is False
    assert elapsed < 0.5


def test_backoff_grows_and_is_capped() -> None:
    # The real default: waits between attempts are spread out, not a busy loop.
    script = Script(cache=[refused()])
    began = time.monotonic()
    with pytest.raises(UnavailableError):
        wait_for([dep()], timeout=1.5, probe_timeout=0.2, inbox=FakeInbox(), probe_fn=script)
    assert time.monotonic() - began < 2.0
    # 0.25 s doubling (+ jitter) within 1.5 s: at most a handful of attempts.
    assert 2 <= script.attempts["cache"] <= 5


# -- the real probes, through the wait (loopback only) ------------------------------------


def test_real_probe_refused_until_deadline() -> None:
    d = dep(f"redis://127.0.0.1:{closed_port()}")
    with capture_logs() as logs, pytest.raises(UnavailableError) as caught:
        run_wait([d], waiting._default_probe, timeout=0.6, probe_timeout=0.3)
    assert "connection refused" in str(caught.value)
    assert [e["event"] for e in logs] == ["dependency_waiting", "dependency_failed"]


def test_real_probe_hard_deadline_on_a_silent_server() -> None:
    with LoopbackServer(silent) as server:
        d = dep(f"redis://127.0.0.1:{server.port}")
        began = time.monotonic()
        with pytest.raises(UnavailableError) as caught:
            wait_for([d], timeout=1.0, probe_timeout=0.4, inbox=FakeInbox())
        elapsed = time.monotonic() - began
    assert 0.9 <= elapsed < 1.4
    assert "timed out after" in str(caught.value)
    assert server.connections >= 2


# -- check and its table ------------------------------------------------------------------


def test_check_returns_results_in_order() -> None:
    script = Script(
        cache=["PONG"],
        db=[ProbeError('database "x" does not exist (SQLSTATE 3D000)', permanent=True)],
        web=[refused()],
    )
    deps = [dep(), dep("postgresql://app:pw@db/x"), dep("http://web/health", "ENTRYPOINT_WAIT_FOR")]
    results = check(deps, probe_timeout=0.5, probe_fn=script)
    assert [r.ok for r in results] == [True, False, False]
    assert [r.permanent for r in results] == [False, True, False]
    assert check_json(results[0]) == {
        "dependency": "redis://:***@cache:6379/0",
        "source": "QUEUE_URL",
        "scheme": "redis",
        "depth": "authenticated",
        "ok": True,
        "latency_ms": results[0].latency_ms,
        "detail": "PONG",
        "reason": None,
        "permanent": False,
    }
    assert check_json(results[1])["reason"] == 'database "x" does not exist (SQLSTATE 3D000)'
    assert json.dumps([check_json(r) for r in results])  # serialisable as is
    table = check_table(results).splitlines()
    assert table[0].split() == ["DEPENDENCY", "SOURCE", "DEPTH", "STATUS", "LATENCY", "DETAIL"]
    assert "redis://:***@cache:6379/0" in table[1]
    assert " ok " in table[1]
    assert "failed, permanent" in table[2]
    assert table[3].rstrip().endswith("connection refused by cache:6379")


def test_check_is_concurrent_and_bounded() -> None:
    release = threading.Event()

    def hang(d: Dependency, timeout: float) -> str:
        release.wait(10)
        return "late"

    began = time.monotonic()
    try:
        results = check([dep(), dep("tcp://db:1")], probe_timeout=0.3, probe_fn=hang)
    finally:
        release.set()
    assert time.monotonic() - began < 0.3 + waiting.GRACE + 0.5
    assert [r.detail for r in results] == ["no answer within 0.3 s"] * 2


def test_render_table_when_nothing_configured() -> None:
    assert check_table([]) == "no dependency to check"


def test_check_result_depth_is_the_dependency_depth() -> None:
    result = check([dep("amqp://rabbit")], probe_timeout=0.1, probe_fn=Script(rabbit=["ok"]))[0]
    assert isinstance(result, CheckResult)
    assert result.depth is Depth.HANDSHAKE


# -- no secret anywhere ---------------------------------------------------------------------

VOCABULARY = (
    "".join(inspect.getsource(m) for m in (waiting, deps_module, urls_module, probes, probes._net))
    + "127.0.0.1 localhost"
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    scheme=st.sampled_from(["redis", "postgresql", "mysql", "amqp", "nats", "http"]),
    user=st.text(st.characters(codec="utf-8"), max_size=8),
    password=st.text(st.characters(codec="utf-8"), min_size=6, max_size=24),
)
def test_password_never_in_errors_or_logs(scheme: str, user: str, password: str) -> None:
    assume(password not in VOCABULARY and password not in user)
    url = f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{PORT}/1"
    d = parse_url(url, "QUEUE_URL")
    with capture_logs() as logs, pytest.raises(UnavailableError) as caught:
        wait_for([d], timeout=0, probe_timeout=0.3, inbox=FakeInbox())
    texts = [str(caught.value), repr(logs), json.dumps(logs, default=str)]
    texts += [json.dumps(check_json(r)) + check_table([r]) for r in check([d], probe_timeout=0.3)]
    for text in texts:
        assert password not in text
        assert quote(password, safe="") not in text


PORT = closed_port()


# -- the real SignalInbox, in a process of its own -------------------------------------------

SCRIPT = textwrap.dedent(
    """
    import sys, time
    from entrypoint.plan.urls import parse_url
    from entrypoint.runtime.loop import Loop
    from entrypoint.runtime.signals import SignalInbox
    from entrypoint.runtime.waiting import wait_for
    inbox = SignalInbox(Loop())
    dep = parse_url(sys.argv[1], "QUEUE_URL")
    print("waiting", flush=True)
    result = wait_for([dep], timeout=60, probe_timeout=0.5, inbox=inbox)
    print(f"result {result} {time.monotonic():.3f}", flush=True)
    """
)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_inbox_interrupts_the_wait(signum: int) -> None:
    with LoopbackServer(silent) as server:
        proc = subprocess.Popen(
            [sys.executable, "-c", SCRIPT, f"redis://127.0.0.1:{server.port}"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "waiting"
            assert wait_until(lambda: server.connections >= 1, 10)
            sent = time.monotonic()
            proc.send_signal(signum)
            out, _ = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    words = out.split()
    assert words[:2] == ["result", "False"]
    assert float(words[2]) - sent < 1.0
    assert proc.returncode == 0
