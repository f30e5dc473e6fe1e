"""Regenerate src/flame/_proto from protos/ (the .proto files are the source of truth).

Usage: python scripts/gen_protos.py [--check]

The generated modules register their descriptors in a private descriptor pool
(flame._proto.POOL) rather than protobuf's default pool, so that flame and
flamepy, whose messages share the names flame.v1.*, can be imported into one
process. --check regenerates into a temporary directory and exits 1 when the
committed files differ.
"""

from __future__ import annotations

import argparse
import filecmp
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
TARGET = ROOT / "src" / "flame" / "_proto"

INIT = '''"""Generated protobuf and gRPC code; regenerate with scripts/gen_protos.py.

Only flame.protocol imports this package.
"""

from google.protobuf import descriptor_pool

POOL = descriptor_pool.DescriptorPool()
'''


def _rewrite(text: str) -> str:
    text = re.sub(r"^from flame\.v1 import", "from flame._proto.v1 import", text, flags=re.M)
    text = re.sub(r"^from flame import (\w+)", r"from flame._proto import \1", text, flags=re.M)
    return text.replace(
        "_descriptor_pool.Default().AddSerializedFile(",
        "_flame_proto.POOL.AddSerializedFile(",
    ).replace(
        "from google.protobuf import descriptor_pool as _descriptor_pool\n",
        "from google.protobuf import descriptor_pool as _descriptor_pool\nimport flame._proto as _flame_proto\n",
    )


def generate(out: Path) -> None:
    from grpc_tools import protoc

    protos = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        include = Path(protoc.__file__).parent / "_proto"
        args = [
            "protoc",
            f"-I{PROTOS}",
            f"-I{include}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *protos,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        generated = Path(tmp) / "flame"
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        (out / "__init__.py").write_text(INIT)
        for path in sorted(generated.rglob("*")):
            if path.is_dir():
                continue
            dest = out / path.relative_to(generated)
            dest.parent.mkdir(parents=True, exist_ok=True)
            for pkg in dest.relative_to(out).parents:
                init = out / pkg / "__init__.py"
                if pkg != Path(".") and not init.exists():
                    init.write_text("")
            dest.write_text(_rewrite(path.read_text()))


def _same_tree(a: Path, b: Path) -> bool:
    cmp = filecmp.dircmp(a, b)
    if cmp.left_only or cmp.right_only or cmp.diff_files or cmp.funny_files:
        return False
    for name in cmp.common_files:
        if (a / name).read_bytes() != (b / name).read_bytes():
            return False
    return all(_same_tree(a / d, b / d) for d in cmp.common_dirs if d != "__pycache__")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the generated code is current")
    args = parser.parse_args()
    if not args.check:
        generate(TARGET)
        print(f"generated {TARGET.relative_to(ROOT)}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "_proto"
        generate(fresh)
        if not _same_tree(fresh, TARGET):
            print("src/flame/_proto is stale: run python scripts/gen_protos.py", file=sys.stderr)
            return 1
    print("src/flame/_proto is current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
