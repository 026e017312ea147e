"""One module per table: ``*Writes`` run inside a writer unit (``tx.tasks``),
``*Repo`` is the store-level API (``store.tasks``): reads on the read connection,
convenience writes through the single writer."""
