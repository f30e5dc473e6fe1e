"""The command lines: ``flame`` (run a cluster, and every client command), ``flmctl`` and ``flmping``."""

from flame.cli._flmctl import flmctl_main
from flame.cli._flmping import flmping_main
from flame.cli._main import main

__all__ = ["flmctl_main", "flmping_main", "main"]
