"""The worker process: RQ's worker tuned for a platform (:mod:`.process`), its delivery threads
with a bulkhead per target (:mod:`.pool`), and its sweeper thread (:mod:`.sweeper`: due jobs,
heartbeats, deliveries of dead workers) with the reconcile step (:mod:`.reconcile`: deliveries
whose job was lost)."""
