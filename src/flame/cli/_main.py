"""``flame``: run the cluster's processes.

    flame up                    session manager + local executor manager, in the foreground
    flame session-manager       the session manager alone
    flame executor-manager      one node's executor manager
    flame object-cache          the object cache (Arrow Flight) alone
    flame list | view | create | close | register | update | unregister
                                the cluster's objects, as `flmctl` does
    flame ping                  run tasks of the built-in flmping application, as `flmping` does
    flame run SCRIPT            run a Python or shell script on the cluster (the built-in flmexec)

Server processes are imported only by the command that starts them, so the
client-side commands stay light.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from flame.cli._flmctl import add_commands
from flame.cli._flmping import add_ping_arguments, describe
from flame.cli._run import add_run_arguments
from flame.cli._shared import run_handler
from flame.errors import FlameError
from flame.types import ResourceRequirement

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def _resources(text: str) -> ResourceRequirement:
    try:
        return ResourceRequirement.parse(text)
    except FlameError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


WARM_HELP = (
    "keep a warm interpreter (grpc and the SDK imported) per free executor slot, so a Python service "
    "starts in milliseconds; --no-warm-services saves their memory on an idle node (default: on)"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flame", description="Flame for Python: elastic sessions of short tasks.")
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log verbosity (default: INFO)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="run an all-in-one cluster in the foreground (Ctrl-C stops it)")
    up.add_argument("--config", "-c", help="cluster config (flame-cluster.yaml); default: built-in defaults")
    up.add_argument("--endpoint", help="where to listen, e.g. http://127.0.0.1:8080 (overrides the config)")
    up.add_argument("--data-dir", help="where state and executor logs go (default: the user data dir)")
    up.add_argument("--storage", help="sqlite:///path, memory or none (default: sqlite under the data dir)")
    up.add_argument("--executors", type=_positive_int, help="executor slots of the local node (default: cpu count)")
    up.add_argument(
        "--cache-endpoint",
        help="where the object cache listens, e.g. grpc://127.0.0.1:9090 (overrides cache.endpoint)",
    )
    up.add_argument("--warm-services", action=argparse.BooleanOptionalAction, default=True, help=WARM_HELP)

    sm = sub.add_parser("session-manager", help="run the session manager")
    sm.add_argument("--config", "-c", help="cluster config (flame-cluster.yaml)")
    sm.add_argument("--endpoint", help="where to listen (overrides cluster.endpoint)")
    sm.add_argument("--data-dir", help="where state goes (overrides cluster.data_dir)")
    sm.add_argument("--storage", help="sqlite:///path, memory or none (overrides cluster.storage)")

    oc = sub.add_parser("object-cache", help="run the object cache (Arrow Flight; the cache section of the config)")
    oc.add_argument("--config", "-c", help="config file with a cache section (flame-cluster.yaml)")
    oc.add_argument(
        "--cache-endpoint", "--endpoint", dest="cache_endpoint", help="where to listen, e.g. grpc://0.0.0.0:9090"
    )
    oc.add_argument("--storage", dest="cache_storage", help="fs:///dir or none (overrides cache.storage)")
    oc.add_argument("--ready-file", help="write the endpoint served to this file once listening")

    em = sub.add_parser("executor-manager", help="run the executor manager of this node")
    em.add_argument("--config", "-c", help="config file with an executor_manager section")
    em.add_argument("--session-manager", help="session manager endpoint, e.g. http://10.0.0.1:8080")
    em.add_argument("--node-name", help="name of this node (default: the host name)")
    em.add_argument("--max-executors", type=_positive_int, help="executor slots on this node")
    em.add_argument(
        "--warm-services",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=WARM_HELP.replace("(default: on)", "(default: executor_manager.warm_services, on)"),
    )
    em.add_argument("--work-dir", help="where executor directories, sockets and logs go")
    em.add_argument(
        "--capacity",
        type=_resources,
        help="what this node offers executors, e.g. cpu=8,mem=16g (default: what the machine has)",
    )
    em.add_argument(
        "--token-file",
        metavar="FILE",
        help="file holding this node's bearer token (role node) for a session manager with token auth; "
        "re-read on SIGHUP (overrides $FLAME_TOKEN and executor_manager.token_file)",
    )
    em.add_argument(
        "--allow-command",
        metavar="GLOB",
        action="append",
        help="a command line this node may run (repeatable; replaces executor_manager.allowed_commands), "
        "e.g. '/usr/bin/python3 *'",
    )

    add_commands(sub, "flame")
    description, epilog = describe("flame ping")
    ping = sub.add_parser(
        "ping",
        help="run tasks of the built-in flmping application",
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_ping_arguments(ping, top_level=False)
    script = sub.add_parser(
        "run",
        help="run a Python or shell script on the cluster (flmexec); prints its stdout",
        description="Run SCRIPT in a session of flmexec and print its stdout; exit 1 with its error if it fails.",
    )
    add_run_arguments(script)
    return parser


def _overrides(args: argparse.Namespace, names: dict[str, str]) -> dict[str, str]:
    """Environment-style overrides for the flags the user gave."""
    return {env: str(getattr(args, attr)) for attr, env in names.items() if getattr(args, attr, None) is not None}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format=LOG_FORMAT, stream=sys.stderr)
    logging.getLogger("grpc").setLevel(logging.WARNING)
    handler = getattr(args, "handler", None)
    if handler is not None:  # a client command: list, view, ..., ping
        return run_handler(handler, args, "flame")
    try:
        if args.command == "up":
            from flame.cli._servers import run_up

            run_up(args)
        elif args.command == "session-manager":
            from flame.cli._servers import run_sm

            run_sm(args)
        elif args.command == "object-cache":
            from flame.cli._servers import run_object_cache

            run_object_cache(args)
        elif args.command == "executor-manager":
            from flame.cli._servers import run_em

            run_em(args)
    except FlameError as exc:
        print(f"flame {args.command}: {exc.message}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"flame {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0
