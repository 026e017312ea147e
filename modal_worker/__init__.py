"""The Parhelia worker: one process per container incarnation.

Materialises the workspace and conversation from the volume, runs the agent,
emits channel records and writes checkpoints. Standard library only (``psutil``
optional); the same code runs as a local subprocess and inside a Modal sandbox.
It never connects to the daemon.
"""
