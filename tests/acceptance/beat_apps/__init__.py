"""Apps for the periodic-task acceptance tests (`pgqueue beat`, `worker --beat`)."""
