"""The log, the writer and the read side; :class:`~ripple.store.store.Store` composes them."""
