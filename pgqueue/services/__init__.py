"""Background services that keep the tables healthy: the leader election and what the
leader runs (stager, rescuer, pruner), and the scheduler that fires periodic tasks."""
