"""A Dramatiq application on the Redis of this machine, in the namespace RECIPE_QUEUE.

dramatiq tests.recipes.dramatiq_app --processes 1 --threads 1
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from tests.recipes import jobs

REDIS_URL = "redis://127.0.0.1:6379/0"


def broker_for(namespace: str) -> RedisBroker:
    return RedisBroker(url=REDIS_URL, namespace=namespace)  # type: ignore[no-untyped-call]


dramatiq.set_broker(broker_for(os.environ.get("RECIPE_QUEUE", "entrypoint-recipe")))


@dramatiq.actor(max_retries=0)
def work(path: str, seconds: float) -> str:
    return jobs.work(path, seconds)
