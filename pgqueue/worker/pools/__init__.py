"""Execution pools: threads and solo (:mod:`.base`), processes (:mod:`.processes`),
asyncio (:mod:`.aio`). The claim loop only asks a pool for free slots."""
