"""An arq worker on the Redis of this machine, its queue named by RECIPE_QUEUE.

    arq tests.recipes.arq_app.WorkerSettings

RECIPE_JOB_COMPLETION_WAIT (seconds, default 0) becomes `job_completion_wait`.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, ClassVar

from arq.connections import RedisSettings

from tests.recipes import jobs


async def work(_ctx: dict[str, Any], path: str, seconds: float) -> str:
    jobs.begin(path)
    await asyncio.sleep(seconds)
    jobs.end(path)
    return path


class WorkerSettings:
    functions: ClassVar[list[Any]] = [work]
    queue_name = os.environ.get("RECIPE_QUEUE", "entrypoint-recipe")
    redis_settings = RedisSettings(host="127.0.0.1", port=6379, database=0)
    job_completion_wait = int(os.environ.get("RECIPE_JOB_COMPLETION_WAIT", "0"))
    health_check_key = f"{queue_name}:health-check"
