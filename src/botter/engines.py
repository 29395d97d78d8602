"""Finding PostgreSQL and Redis: the configured URLs, or embedded servers in the data dir."""

from collections.abc import Callable
from dataclasses import dataclass, field

from botter.config import Settings
from botter.embedded import EmbeddedPostgres, EmbeddedRedis


@dataclass
class Engines:
    settings: Settings
    _stops: list[Callable[[], None]] = field(default_factory=list)

    def stop_started(self) -> None:
        """Stop only what this process started; servers it found running stay up."""
        for stop in reversed(self._stops):
            stop()
        self._stops.clear()


def resolve_engines(settings: Settings) -> Engines:
    """Settings whose DATABASE_URL and REDIS_URL are set, starting embedded servers if needed."""
    updates: dict[str, str] = {}
    stops: list[Callable[[], None]] = []
    data_dir = settings.botter_data_dir
    if not settings.database_url:
        postgres = EmbeddedPostgres(data_dir / "postgres")
        was_running = postgres.running_port() is not None
        updates["database_url"] = postgres.start()
        if not was_running:
            stops.append(postgres.stop)
    if not settings.redis_url:
        redis = EmbeddedRedis(data_dir / "redis")
        was_running = redis.running_port() is not None
        updates["redis_url"] = redis.start()
        if not was_running:
            stops.append(redis.stop)
    resolved = settings.model_copy(update=updates) if updates else settings
    return Engines(resolved, stops)
