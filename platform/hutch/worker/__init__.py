"""The worker: consume deliveries, run tasks in a pool, record every outcome before acking."""
