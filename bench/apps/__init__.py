"""The benchmark's task modules, one per system, as each system's worker imports them.

Every task is a one-line wrapper around :mod:`bench.workload`, so the work is identical.
"""
