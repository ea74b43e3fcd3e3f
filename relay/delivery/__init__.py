"""One delivery of an event to a target: its attempt as a state machine (:mod:`.attempt`: lock,
state, progress, settle, the retry schedule), pacing (:mod:`.pacing`), the delivery queue
(:mod:`.queue`: jobs, batches, due jobs) and the POST with its deadline (:mod:`.http`)."""
