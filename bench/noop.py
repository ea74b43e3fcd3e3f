"""The worker baseline: an RQ job that does nothing."""


def noop() -> None:
    return None
