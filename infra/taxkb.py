"""A remote knowledge base over HTTP: the TaxKB service (WORKTOOL_TAXKB_BASE_URL, WORKTOOL_TAXKB_API_KEY),
as a `KnowledgeBase` (operators/knowledge.py).

Wire format (TaxKB v3's search, as this adapter speaks it; the path is WORKTOOL_TAXKB_SEARCH_PATH):

    POST {base_url}/search   Authorization: Bearer <key>   {"query": "...", "top_k": 5}
    200 {"results": [{"id", "title", "content", "score", "source"?}, ...]}

The answer is read leniently, because deployments differ: the list may be the body itself or sit under
`results`, `items` or `data` (itself a list, or an object with `results`/`items`), inside an envelope
`{"code": 0, "data": ...}` whose non-zero code is an error; a passage's text is `content`, `text`,
`answer` or `snippet`, its title `title` or `question`, its id `id`, `doc_id` or `document_id`. An item
without an id or a text is skipped.

It never raises into the caller: a timeout, a connection error, an HTTP error status or an answer it
cannot read is logged (the reason, never the key) and answered with no passages. Successful answers are
cached per (query, limit) for WORKTOOL_TAXKB_CACHE_TTL_S (bounded, oldest out first); failures are not
cached, so the next question tries again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import httpx

from operators.knowledge import MAX_QUERY_CHARS, Passage

log = logging.getLogger(__name__)

CACHE_ENTRIES = 1024


class TaxKBAnswerError(ValueError):
    """An answer this adapter cannot read (logged, never raised to the caller)."""


class TaxKBKnowledgeBase:
    name = "taxkb"

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout_s: float = 5.0,
        cache_ttl_s: float = 300.0,
        search_path: str = "/search",
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Accept": "application/json", "User-Agent": "worktool-kb/1"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(timeout_s),
            transport=transport,
            follow_redirects=False,
        )
        self._path = "/" + search_path.lstrip("/")
        self.timeout_s = timeout_s
        self.cache_ttl_s = cache_ttl_s
        self._clock = clock
        self._cache: OrderedDict[tuple[str, int], tuple[float, list[Passage]]] = OrderedDict()
        self._lock = threading.Lock()
        self.calls = 0  # requests sent (the cache's effect is visible in tests and metrics)

    def search(self, query: str, limit: int = 5) -> list[Passage]:
        query = " ".join(query[:MAX_QUERY_CHARS].split())
        if not query or limit < 1:
            return []
        key = (query, limit)
        if (cached := self._cached(key)) is not None:
            return cached
        try:
            passages = self._ask(query, limit)
        except httpx.TimeoutException:
            log.warning("taxkb: no answer within %.1f s; replying without passages", self.timeout_s)
            return []
        except httpx.HTTPError as e:
            log.warning("taxkb: request failed (%s); replying without passages", type(e).__name__)
            return []
        except TaxKBAnswerError as e:
            log.warning("taxkb: %s; replying without passages", e)
            return []
        except Exception as e:  # never into the reply path
            log.warning("taxkb: unexpected %s; replying without passages", type(e).__name__)
            return []
        self._store(key, passages)
        return passages

    def close(self) -> None:
        self._client.close()

    # -- internals -----------------------------------------------------------------------------------

    def _ask(self, query: str, limit: int) -> list[Passage]:
        self.calls += 1
        response = self._client.post(self._path, json={"query": query, "top_k": limit})
        if response.status_code != 200:
            raise TaxKBAnswerError(f"HTTP {response.status_code} from {self._path}")
        try:
            body = response.json()
        except ValueError:
            raise TaxKBAnswerError("the answer is not JSON") from None
        return read_answer(body, limit)

    def _cached(self, key: tuple[str, int]) -> list[Passage] | None:
        if self.cache_ttl_s <= 0:
            return None
        with self._lock:
            hit = self._cache.get(key)
            if hit is None:
                return None
            stored_at, passages = hit
            if self._clock() - stored_at >= self.cache_ttl_s:
                del self._cache[key]
                return None
            return passages

    def _store(self, key: tuple[str, int], passages: list[Passage]) -> None:
        if self.cache_ttl_s <= 0:
            return
        with self._lock:
            self._cache[key] = (self._clock(), passages)
            self._cache.move_to_end(key)
            while len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)


def read_answer(body: Any, limit: int) -> list[Passage]:
    """The passages of a search answer (module doc), best first, at most `limit`."""
    items = _items(body)
    passages = [p for p in (_passage(item) for item in items) if p is not None]
    passages.sort(key=lambda p: -p.score)
    return passages[:limit]


def _items(body: Any) -> list[Any]:
    if isinstance(body, dict) and "code" in body and body["code"] not in (0, "0", 200, "200", "ok", "OK"):
        message = body.get("message") or body.get("msg") or ""
        raise TaxKBAnswerError(f"error code {body['code']!r} {str(message)[:200]!r}")
    node = body
    for _ in range(3):  # body -> data -> results
        if isinstance(node, list):
            return node
        if not isinstance(node, dict):
            break
        key = next((k for k in ("results", "items", "data") if k in node), None)
        if key is None:
            break
        node = node[key]
    raise TaxKBAnswerError("no list of results in the answer")


def _first(item: dict[str, Any], *keys: str) -> Any:
    return next((item[k] for k in keys if item.get(k) not in (None, "")), None)


def _passage(item: Any) -> Passage | None:
    if not isinstance(item, dict):
        return None
    ident, text = (
        _first(item, "id", "doc_id", "document_id"),
        _first(item, "content", "text", "answer", "snippet"),
    )
    if not isinstance(ident, str | int) or not isinstance(text, str):
        return None
    title = _first(item, "title", "question")
    score = _first(item, "score", "relevance")
    source = _first(item, "source", "url")
    return Passage(
        id=f"taxkb:{ident}",
        title=title if isinstance(title, str) else "",
        text=text,
        source=source if isinstance(source, str) else "taxkb",
        score=float(score) if isinstance(score, int | float) and not isinstance(score, bool) else 0.0,
    )
