"""`entrypoint handoff --store` as the CLI will run it, for tests that need a real process.

    python tests/handoff_store_driver.py URL KEY TTL [--wait] -- CMD...

Installs the early signal handlers as the console script does, configures
JSON logs on stderr, calls `run_store_handoff`, and renders an EntrypointError
as its one line and exit code.
"""

from __future__ import annotations

import sys

from entrypoint import sigstate

sigstate.install()

from entrypoint.errors import EntrypointError  # noqa: E402 - after the early handlers
from entrypoint.plan.urls import parse_url  # noqa: E402
from entrypoint.runtime import log  # noqa: E402
from entrypoint.runtime.handoff_store import run_store_handoff  # noqa: E402


def main(argv: list[str]) -> int:
    split = argv.index("--")
    options, command = argv[:split], argv[split + 1 :]
    url, key, ttl = options[:3]
    log.configure("info", "json")
    try:
        return run_store_handoff(
            command,
            store=parse_url(url, "ENTRYPOINT_LEASE_URL"),
            key=key,
            ttl=float(ttl),
            wait="--wait" in options[3:],
            log=log.get_logger(),
        )
    except EntrypointError as exc:
        sys.stderr.write(f"entrypoint: error: {exc.message}\n")
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
