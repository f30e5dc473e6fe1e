"""What every client command shares: the argument parser, --config/--endpoint, connecting, errors.

Expected failures (a FlameError: not found, bad input, unreachable cluster) print one line
``<prog>: <message>`` and exit 1; bad flags exit 2 with argparse's message and a pointer to --help;
Ctrl-C exits 130. None of them prints a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from flame.config import load_client_config, parse_endpoint, read_token_file
from flame.errors import FlameError, InvalidArgument
from flame.types import ResourceRequirement

if TYPE_CHECKING:
    from flame.client import Connection

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

Handler = Callable[[argparse.Namespace, str], int]


class CliParser(argparse.ArgumentParser):
    """argparse with help that keeps its examples' layout, and usage errors that say where to look."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\nRun '{self.prog} --help' for what is accepted.\n")


def endpoint_flag(text: str) -> str:
    """argparse type of --endpoint: ``http://host:port``, ``https://host:port`` or ``host:port``."""
    try:
        parse_endpoint(text, "--endpoint")
    except InvalidArgument as exc:
        raise argparse.ArgumentTypeError(exc.message) from None
    return text.strip()


def add_client_flags(parser: argparse.ArgumentParser, *, top_level: bool) -> None:
    """--config and --endpoint; accepted before the sub-command and after it (``top_level=False``)."""
    default = None if top_level else argparse.SUPPRESS
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=default,
        help="client config to use instead of ~/.flame/flame.yaml (its current-context names the cluster)",
    )
    parser.add_argument(
        "--endpoint",
        metavar="URL",
        type=endpoint_flag,
        default=default,
        help="the session manager, e.g. http://127.0.0.1:8080 (overrides $FLAME_ENDPOINT and the config)",
    )
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        default=default,
        help="a file holding the bearer token for a cluster with token authentication "
        "(overrides $FLAME_TOKEN and the context's token; a file, so the token stays out of `ps`)",
    )


def add_output_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--output",
        "--output-format",
        dest="output",
        choices=("table", "json"),
        default="table",
        help="table for people (default), json for scripts",
    )


def priority_flag(text: str) -> int:
    """argparse type of -P/--priority: a whole number >= 0 (higher runs first)."""
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0 (higher runs first), got {text!r}")
    return int(text)


def resreq_flag(text: str) -> ResourceRequirement:
    """argparse type of -r/--resreq: ``cpu=N,mem=SIZE[,gpu=N]``."""
    try:
        return ResourceRequirement.parse(text)
    except InvalidArgument as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def connect_from(args: argparse.Namespace) -> Connection:
    """Connect as the flags say: --endpoint, else $FLAME_ENDPOINT, else the config's current context."""
    from flame.client import connect  # here, so commands that run servers never load the client

    config_path = getattr(args, "config", None)
    endpoint = getattr(args, "endpoint", None)
    token_file = getattr(args, "token_file", None)
    token = read_token_file(Path(token_file), "command line", "--token-file") if token_file else None
    if config_path is None:
        return connect(endpoint, token=token)  # the SDK reads $FLAME_ENDPOINT and ~/.flame/flame.yaml itself
    config = load_client_config(config_path)
    return connect(endpoint or str(config.endpoint), ca_file=config.ca_file, token=token or config.token)


def configure_logging() -> None:
    """Entry points only: the SDK's warnings go to stderr, nothing chattier."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def run_handler(handler: Handler, args: argparse.Namespace, prog: str) -> int:
    """Run a client command, turning the expected failures into a message and an exit code."""
    try:
        code = handler(args, prog)
        sys.stdout.flush()
        return code
    except FlameError as exc:
        print(f"{prog}: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (e.g. `flmctl list -s | head -1`): exit quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
