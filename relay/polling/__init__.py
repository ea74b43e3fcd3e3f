"""Polling the provider when callbacks cannot arrive: the Suno API client (:mod:`.client`), the
watched tasks (:mod:`.watchlist`: submit, watch, schedule) and one poll (:mod:`.poll`)."""
