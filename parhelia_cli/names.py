"""Names the console script resolves before Click is loaded: the command groups' short
aliases (``parhelia t list`` is ``parhelia task list``). Read by the Click root group
(:mod:`parhelia_cli.main`), ``parhelia help`` and the quick reads
(:mod:`parhelia_cli.quick`); imports nothing."""

ALIASES = {"t": "task", "s": "session", "c": "checkpoint", "b": "budget", "e": "events"}
