"""Redis: every key the relay writes (:mod:`.keys`), the connection (:mod:`.connection`), events
and delivery states (:mod:`.state`), the Lua steps' plumbing (:mod:`.scripts`), the records the
operator's page reads (:mod:`.activity`), and riding out an outage (:mod:`.outage`)."""
