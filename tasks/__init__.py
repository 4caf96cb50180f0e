"""Data: real data-set loaders and synthetic problems, each a task with batches, a loss and a metric."""
