"""Backends run worker containers. See ``base.Backend`` for the contract."""
