"""Automatic persisted queries, the protocol Apollo and urql clients speak: a request may carry
`extensions.persistedQuery.sha256Hash` instead of its document; an unknown hash answers
PersistedQueryNotFound and the client retries with the document, which is then remembered.
Kept per worker in a bounded LRU: a miss only costs the client one retry."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

NOT_FOUND = "PersistedQueryNotFound"
NOT_FOUND_CODE = "PERSISTED_QUERY_NOT_FOUND"
MAX_DOCUMENTS = 5000


class PersistedQueryNotFound(Exception):
    pass


class PersistedQueryInvalid(ValueError):
    pass


class PersistedQueries:
    def __init__(self, size: int = MAX_DOCUMENTS) -> None:
        self.size = size
        self._documents: OrderedDict[str, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._documents)

    def resolve(self, query: str | None, extensions: dict[str, Any] | None) -> str | None:
        """The document to execute: `query`, or the one its hash names."""
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
        if hashlib.sha256(query.encode()).hexdigest() != digest:
            raise PersistedQueryInvalid("provided sha does not match query")
        self._documents[digest] = query
        self._documents.move_to_end(digest)
        while len(self._documents) > self.size:
            self._documents.popitem(last=False)
        return query
