"""The Parhelia contract: the generated ``parhelia.v1`` API plus the hand-written
catalogues every process shares (errors, events). Importing this package imports
no gRPC and no protobuf; ``parhelia.v1`` does.
"""

__version__ = "0.1.0"
