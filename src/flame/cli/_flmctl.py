"""``flmctl``: list, view, create, close, register, update and unregister Flame's objects.

The same sub-commands are ``flame list``, ``flame view``, ...: :func:`add_commands` builds them into
any parser, so there is one implementation behind both names.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from flame.cli._listing import (
    application_details,
    applications_table,
    executors_table,
    node_details,
    nodes_table,
    session_details,
    sessions_table,
    sort_sessions,
    task_details,
)
from flame.cli._manifest import ApplicationManifest, load_manifests
from flame.cli._records import (
    application_record,
    executor_record,
    node_record,
    session_info,
    session_record,
    task_record,
)
from flame.cli._shared import (
    EXIT_OK,
    EXIT_USAGE,
    CliParser,
    add_client_flags,
    add_output_flag,
    configure_logging,
    connect_from,
    priority_flag,
    resreq_flag,
    run_handler,
)
from flame.cli._tables import render_json
from flame.errors import FlameError, NotFound

if TYPE_CHECKING:
    from flame.client import Connection


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(render_json(data) if args.output == "json" else text)


# -- list -----------------------------------------------------------------------------------


def _list(args: argparse.Namespace, prog: str) -> int:
    with connect_from(args) as conn:
        if args.application:
            apps = sorted(conn.list_applications(), key=lambda a: a.name)
            _emit(args, [application_record(a) for a in apps], applications_table(apps))
        elif args.session:
            infos = sort_sessions([session_info(s) for s in conn.list_sessions()])
            _emit(args, [session_record(s) for s in infos], sessions_table(infos))
        elif args.executor:
            executors = sorted(conn.list_executors(), key=lambda e: (e.node, e.id))
            _emit(args, [executor_record(e) for e in executors], executors_table(executors))
        else:
            nodes = sorted(conn.list_nodes(), key=lambda n: n.name)
            _emit(args, [node_record(n) for n in nodes], nodes_table(nodes))
    return EXIT_OK


# -- view -----------------------------------------------------------------------------------


def _view(args: argparse.Namespace, prog: str) -> int:
    if args.task is not None and args.session is None:
        print(f"{prog} view: error: -t/--task needs -s/--session ID (task ids are per session)", file=sys.stderr)
        return EXIT_USAGE
    with connect_from(args) as conn:
        if args.application is not None:
            _view_application(conn, args, prog)
        elif args.node is not None:
            _view_node(conn, args)
        else:
            _view_session(conn, args)
    return EXIT_OK


def _view_application(conn: Connection, args: argparse.Namespace, prog: str) -> None:
    app = conn.get_application(args.application)
    if app is None:
        raise NotFound(f"application {args.application!r} not found; `{prog} list -a` shows the registered ones")
    _emit(args, application_record(app), application_details(app))


def _view_session(conn: Connection, args: argparse.Namespace) -> None:
    session = conn.get_session(args.session)
    info = session_info(session)
    if args.task is None:
        _emit(args, session_record(info), session_details(info))
        return
    task = session.get_task(args.task)
    _emit(args, task_record(task), task_details(task, info.spec.application))


def _view_node(conn: Connection, args: argparse.Namespace) -> None:
    nodes = conn.list_nodes()
    for node in nodes:
        if node.name == args.node:
            _emit(args, node_record(node), node_details(node))
            return
    known = ", ".join(sorted(n.name for n in nodes)) or "none"
    raise NotFound(f"node {args.node!r} not found; the cluster's nodes: {known}")


# -- sessions -------------------------------------------------------------------------------


def _create(args: argparse.Namespace, prog: str) -> int:
    with connect_from(args) as conn:
        session = conn.create_session(args.app, priority=args.priority, resreq=args.resreq)
        _emit(args, session_record(session_info(session)), f"Session <{session.id}> was created.")
    return EXIT_OK


def _close(args: argparse.Namespace, prog: str) -> int:
    with connect_from(args) as conn:
        session = conn.close_session(args.session)
        _emit(args, session_record(session_info(session)), f"Session <{session.id}> was closed.")
    return EXIT_OK


# -- applications ---------------------------------------------------------------------------


def _apply(args: argparse.Namespace, action: str) -> int:
    """Register or update every application of ``args.file``, validated as a whole first."""
    manifests = load_manifests(args.file)  # before connecting: a bad file needs no cluster
    done: list[ApplicationManifest] = []
    with connect_from(args) as conn:
        call = conn.register_application if action == "registered" else conn.update_application
        for manifest in manifests:
            try:
                call(manifest.name, manifest.spec)
            except FlameError as exc:
                before = f"; {action} before it: {', '.join(m.name for m in done)}" if done else ""
                where = f"{args.file}: document {manifest.document} ({manifest.name})"
                raise type(exc)(f"{where}: {exc.message}{before}") from exc
            done.append(manifest)
            if args.output == "table":
                print(f"Application <{manifest.name}> was {action}.")
    if args.output == "json":
        print(render_json([{"name": m.name, "document": m.document, "action": action} for m in done]))
    return EXIT_OK


def _register(args: argparse.Namespace, prog: str) -> int:
    return _apply(args, "registered")


def _update(args: argparse.Namespace, prog: str) -> int:
    return _apply(args, "updated")


def _unregister(args: argparse.Namespace, prog: str) -> int:
    with connect_from(args) as conn:
        conn.unregister_application(args.application)
    _emit(
        args,
        {"name": args.application, "action": "unregistered"},
        f"Application <{args.application}> was unregistered.",
    )
    return EXIT_OK


# -- the parsers ----------------------------------------------------------------------------


def _examples(prog: str, lines: Sequence[str]) -> str:
    return "examples:\n" + "\n".join(f"  {prog} {line}" for line in lines)


def _add(sub: Any, prog: str, name: str, summary: str, examples: Sequence[str]) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=summary,
        description=f"{summary[0].upper()}{summary[1:]}.",
        epilog=_examples(prog, examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def add_commands(sub: Any, prog: str) -> None:
    """Add list, view, create, close, register, update and unregister to ``sub`` (an add_subparsers result)."""
    _add_list(sub, prog)
    _add_view(sub, prog)
    _add_session_commands(sub, prog)
    _add_application_commands(sub, prog)


def _finish(parser: argparse.ArgumentParser, handler: Any, *, output: bool = True) -> None:
    if output:
        add_output_flag(parser)
    add_client_flags(parser, top_level=False)
    parser.set_defaults(handler=handler)


def _add_list(sub: Any, prog: str) -> None:
    parser = _add(
        sub,
        prog,
        "list",
        "list the applications, sessions, executors or nodes of the cluster",
        ["list -a", "list -s", "list -s -o json", "list -e --endpoint http://10.0.0.1:8080", "list -n"],
    )
    kinds = parser.add_mutually_exclusive_group(required=True)
    kinds.add_argument("-a", "--application", "--applications", action="store_true", help="list applications")
    kinds.add_argument("-s", "--session", "--sessions", action="store_true", help="list sessions")
    kinds.add_argument("-e", "--executor", "--executors", action="store_true", help="list executors")
    kinds.add_argument("-n", "--node", "--nodes", action="store_true", help="list nodes")
    _finish(parser, _list)


def _add_view(sub: Any, prog: str) -> None:
    parser = _add(
        sub,
        prog,
        "view",
        "show one application, session, task or node in detail, events included",
        ["view -a flmping", "view -s flmping-Ab12Cd", "view -s flmping-Ab12Cd -t 7 -o json", "view -n node-1"],
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("-a", "--application", metavar="NAME", help="the application called NAME")
    what.add_argument("-s", "--session", metavar="ID", help="the session ID (with -t: one of its tasks)")
    what.add_argument("-n", "--node", metavar="NAME", help="the node called NAME")
    parser.add_argument("-t", "--task", metavar="TASK", help="a task of the session given with -s")
    _finish(parser, _view)


def _add_session_commands(sub: Any, prog: str) -> None:
    create = _add(
        sub,
        prog,
        "create",
        "create a session of an application and print its id",
        ["create -a flmping", "create -a my-app -P 10 -r cpu=2,mem=4g", "create -a flmping -o json"],
    )
    create.add_argument("-a", "--app", "--application", dest="app", metavar="APP", required=True, help="application")
    create.add_argument(
        "-P", "-p", "--priority", type=priority_flag, default=0, help="priority, higher runs first (default: 0)"
    )
    create.add_argument(
        "-r", "--resreq", type=resreq_flag, metavar="RESREQ", help="resources per executor: cpu=N,mem=SIZE[,gpu=N]"
    )
    _finish(create, _create)

    close = _add(sub, prog, "close", "close a session: its unfinished tasks are cancelled", ["close -s flmping-Ab12Cd"])
    close.add_argument("-s", "--session", metavar="ID", required=True, help="the session to close")
    _finish(close, _close)


def _add_application_commands(sub: Any, prog: str) -> None:
    yaml_help = "YAML file of one or more applications (documents separated by ---)"
    register = _add(
        sub,
        prog,
        "register",
        "register the applications of a YAML file (metadata: {name: ...}, spec: {command: ...})",
        ["register -f my-app.yaml", "register -f apps.yaml -o json"],
    )
    register.add_argument("-f", "--file", metavar="FILE", required=True, help=yaml_help)
    _finish(register, _register)

    update = _add(
        sub,
        prog,
        "update",
        "update registered applications from a YAML file, as register reads it",
        ["update -f my-app.yaml"],
    )
    source = update.add_mutually_exclusive_group(required=True)
    source.add_argument("-f", "--file", metavar="FILE", help=yaml_help)
    source.add_argument("-a", "--application", dest="file", metavar="FILE", help="the same as -f (Flame's spelling)")
    _finish(update, _update)

    unregister = _add(sub, prog, "unregister", "unregister an application", ["unregister -a my-app"])
    unregister.add_argument("-a", "--application", metavar="NAME", required=True, help="the application to remove")
    _finish(unregister, _unregister)


class _VersionAction(argparse.Action):
    """--version, looking the version up only when asked (importlib.metadata is slow to import)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        from importlib import metadata

        try:
            version = metadata.version("flame-python")
        except metadata.PackageNotFoundError:
            version = "unknown"
        parser.exit(message=f"{parser.prog} (Flame for Python) {version}\n")


def build_parser() -> CliParser:
    parser = CliParser(
        prog="flmctl",
        description="Manage a Flame cluster: its applications, sessions, tasks, executors and nodes.",
        epilog="The cluster is --endpoint, else $FLAME_ENDPOINT, else the current context of ~/.flame/flame.yaml,\n"
        "else http://127.0.0.1:8080 (start one there with `flame up`).\n\n"
        + _examples("flmctl", ["list -s", "view -s flmping-Ab12Cd", "register -f my-app.yaml", "COMMAND --help"]),
    )
    add_client_flags(parser, top_level=True)
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=CliParser)
    add_commands(sub, "flmctl")
    return parser


def flmctl_main(argv: Sequence[str] | None = None) -> int:
    """The ``flmctl`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    configure_logging()
    return run_handler(args.handler, args, "flmctl")
