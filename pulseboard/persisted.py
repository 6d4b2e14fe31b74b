"""Automatic persisted queries, the protocol Apollo and urql clients speak: a request may carry
`extensions.persistedQuery.sha256Hash` instead of its document; an unknown hash answers
PersistedQueryNotFound and the client retries with the document, which is then remembered.
Kept per worker in an LRU bounded by count and by bytes: a miss only costs the client one retry.
A document is remembered only once it has parsed, validated and passed the limits, and only up
to a size, so anonymous registrations cannot fill memory with junk."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

NOT_FOUND = "PersistedQueryNotFound"
NOT_FOUND_CODE = "PERSISTED_QUERY_NOT_FOUND"


class PersistedQueryNotFound(Exception):
    pass


class PersistedQueryInvalid(ValueError):
    pass


class PersistedQueries:
    def __init__(self, *, max_count: int, max_bytes: int, max_document_bytes: int) -> None:
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.max_document_bytes = max_document_bytes
        self._documents: OrderedDict[str, str] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._documents)

    @property
    def bytes(self) -> int:
        return self._bytes

    def resolve(
        self, query: str | None, extensions: dict[str, Any] | None, *, acceptable: Callable[[str], bool]
    ) -> str | None:
        """The document to execute: `query`, or the one its hash names. A document sent with its
        hash is remembered when `acceptable(document)` says it would run."""
        persisted = (extensions or {}).get("persistedQuery")
        if persisted is None:
            return query
        if not isinstance(persisted, dict) or persisted.get("version") != 1:
            raise PersistedQueryInvalid("Unsupported persisted query version")
        digest = persisted.get("sha256Hash")
        if not isinstance(digest, str):
            raise PersistedQueryInvalid("persistedQuery.sha256Hash must be a string")
        if query is None:
            document = self._documents.get(digest)
            if document is None:
                raise PersistedQueryNotFound
            self._documents.move_to_end(digest)
            return document
        encoded = query.encode(errors="surrogatepass")
        if hashlib.sha256(encoded).hexdigest() != digest:
            raise PersistedQueryInvalid("provided sha does not match query")
        if digest in self._documents:
            self._documents.move_to_end(digest)
        elif len(encoded) <= self.max_document_bytes and acceptable(query):
            self._store(digest, query, len(encoded))
        return query

    def _store(self, digest: str, query: str, size: int) -> None:
        self._documents[digest] = query
        self._bytes += size
        while len(self._documents) > self.max_count or self._bytes > self.max_bytes:
            _, old = self._documents.popitem(last=False)
            self._bytes -= len(old.encode(errors="surrogatepass"))
