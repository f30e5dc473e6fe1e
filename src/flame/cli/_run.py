"""``flame run SCRIPT``: run a Python or shell script on the cluster through the built-in flmexec.

The script's stdout is printed here; a script that fails prints flmexec's reason (its exit code
and the last lines of its stderr) and the command exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from flame.cli._shared import EXIT_FAILED, EXIT_OK, add_client_flags, connect_from
from flame.errors import InvalidArgument, TaskFailed

LANGUAGES = {".py": "python", ".sh": "shell", ".bash": "shell"}


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("script", metavar="SCRIPT", help="the script file (.py runs as Python, .sh as shell)")
    parser.add_argument("--language", choices=("python", "shell"), help="instead of guessing from the file name")
    parser.add_argument("--runtime", help="a Python version such as 3.11, or a shell such as zsh")
    parser.add_argument("--input", metavar="FILE", help="the script's stdin: a file, or - for this stdin")
    parser.add_argument("--timeout", type=_timeout, metavar="SECONDS", help="kill the script after this long")
    parser.add_argument("--application", default="flmexec", help="the flmexec application to use (default: flmexec)")
    add_client_flags(parser, top_level=False)
    parser.set_defaults(handler=run)


def script_request(args: argparse.Namespace) -> bytes:
    path = Path(args.script)
    try:
        code = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"cannot read script {path}: {exc}") from exc
    language = args.language or LANGUAGES.get(path.suffix)
    if language is None:
        accepted = ", ".join(LANGUAGES)
        raise InvalidArgument(f"cannot tell the language of {path} (accepted: {accepted}): give --language")
    request: dict[str, object] = {"language": language, "code": code}
    if args.runtime:
        request["runtime"] = args.runtime
    if args.input is not None:
        try:
            data = sys.stdin.buffer.read() if args.input == "-" else Path(args.input).read_bytes()
        except OSError as exc:
            raise InvalidArgument(f"cannot read input {args.input}: {exc}") from exc
        request["input"] = list(data)
    if args.timeout is not None:
        request["timeout"] = args.timeout
    return json.dumps(request).encode()


def run(args: argparse.Namespace, prog: str) -> int:
    request = script_request(args)
    with connect_from(args) as conn, conn.create_session(args.application) as session:
        try:
            output = session.invoke(request)
        except TaskFailed as exc:
            print(f"{prog} run: {exc.message}", file=sys.stderr)
            return EXIT_FAILED
    sys.stdout.buffer.write(bytes(json.loads(output)["data"]))
    return EXIT_OK
