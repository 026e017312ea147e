"""Words of interactive sessions shared by the worker, the daemon and the CLI
(docs/adr/0020-interactive-sessions.md). Pure Python, shipped into the worker image."""

DETACH_HINT = ("Ctrl-B D detaches (inside your own tmux: Ctrl-B Ctrl-B D); the session keeps "
               "running and a detach checkpoint is taken")
"""How a person leaves an interactive session without stopping it."""
