"""The one shape of everything that owns a kernel or library handle."""

from __future__ import annotations

from typing import Self


class Handle:
    """Owns a handle: `close()` releases it (idempotent); `with` releases it on the way out."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
