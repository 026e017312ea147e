"""CLI flows: what a Click command and the MCP bridge both do, as plain functions.

A command module (``parhelia_cli/commands/``) parses options and renders; when another
command or the bridge (``parhelia_cli.mcp_server``) needs the same steps, they live here,
so no command module imports another (``tests/unit/core/test_import_graph.py``).
"""
