"""A Huey application on the Redis of this machine, named by RECIPE_QUEUE.

huey_consumer tests.recipes.huey_app.huey -w 1
"""

from __future__ import annotations

import os
from typing import Any

from huey import RedisHuey

from tests.recipes import jobs

REDIS_URL = "redis://127.0.0.1:6379/0"


def make(name: str) -> tuple[Any, Any]:
    """A Huey named `name` and its `work` task (the same task key in every process)."""
    huey = RedisHuey(name, url=REDIS_URL)

    def work(path: str, seconds: float) -> str:
        return jobs.work(path, seconds)

    return huey, huey.task()(work)


huey, work = make(os.environ.get("RECIPE_QUEUE", "entrypoint-recipe"))
