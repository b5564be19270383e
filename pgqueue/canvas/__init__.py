"""Celery's canvas: signatures, and the workflows built of them (chain, group, chord,
chunks, map, starmap), sent in one transaction and advanced by the database in the
transaction that records each step's outcome. See docs/canvas.md."""

from __future__ import annotations

from pgqueue.canvas.signatures import (
    Signature,
    chain,
    chord,
    chunks,
    group,
    maybe_signature,
    signature,
    xmap,
    xstarmap,
)

subtask = signature  # Celery's old name

__all__ = ["Signature", "signature", "subtask", "maybe_signature", "chain", "group", "chord",
           "chunks", "xmap", "xstarmap"]
