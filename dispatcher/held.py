"""Commands read but not yet sent: grouped by route (one robot, or one webhook), each waiting for its due
time. Pure bookkeeping; the earliest due time of each route is kept so that picking the next request
costs one pass over the routes, not over every held command."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from dispatcher.offsets import Partition
from worktool.models import CommandChannel, CommandRecord


@dataclass(frozen=True, slots=True)
class Route:
    """Where a command goes. Commands with the same route may share one request."""

    kind: Literal["worktool", "webhook", "not_sendable"]
    channel: CommandChannel
    robot_id: str  # of the accepted record: the sending robot, or webhook:<channel>
    reason: str = ""  # why it cannot be sent

    @property
    def needs_token(self) -> bool:
        return self.kind == "worktool"


@dataclass(frozen=True, slots=True)
class Held:
    command: CommandRecord
    partition: Partition
    offset: int
    due: float  # epoch seconds
    route: Route

    @property
    def command_id(self) -> str:
        return self.command.command_id


class HeldCommands:
    def __init__(self) -> None:
        self._by_route: dict[Route, list[Held]] = {}
        self._earliest: dict[Route, float] = {}
        self._ids: set[str] = set()

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, held: Held) -> bool:
        """Hold a command; False when one with its id is already held (the dataflow writes at least once)."""
        if held.command_id in self._ids:
            return False
        self._ids.add(held.command_id)
        self._by_route.setdefault(held.route, []).append(held)
        self._earliest[held.route] = min(held.due, self._earliest.get(held.route, held.due))
        return True

    def next_due_route(self, now: float) -> Route | None:
        """The route whose oldest due command is the oldest; routes that need no rate-limit token first,
        so that phone calls and SMS never wait behind WorkTool's limit."""
        best: dict[bool, tuple[float, Route]] = {}
        for route, due in self._earliest.items():
            if due <= now and (route.needs_token not in best or due < best[route.needs_token][0]):
                best[route.needs_token] = (due, route)
        chosen = best.get(False) or best.get(True)
        return chosen[1] if chosen else None

    def next_due_time(self) -> float | None:
        return min(self._earliest.values(), default=None)

    def take(self, route: Route, now: float, limit: int) -> list[Held]:
        """Up to `limit` due commands of `route`, in the order they were read."""
        items = self._by_route.get(route, [])
        taken = [h for h in items if h.due <= now][:limit]
        taken_ids = {h.command_id for h in taken}
        self._set(route, [h for h in items if h.command_id not in taken_ids])
        return taken

    def release(self, command_ids: Iterable[str]) -> None:
        """Forget ids taken and handled: a later copy of them is checked against the claims."""
        self._ids.difference_update(command_ids)

    def drop_partitions(self, partitions: set[Partition]) -> None:
        for route, items in list(self._by_route.items()):
            self._ids.difference_update(h.command_id for h in items if h.partition in partitions)
            self._set(route, [h for h in items if h.partition not in partitions])

    def _set(self, route: Route, items: list[Held]) -> None:
        if items:
            self._by_route[route] = items
            self._earliest[route] = min(h.due for h in items)
        else:
            self._by_route.pop(route, None)
            self._earliest.pop(route, None)
