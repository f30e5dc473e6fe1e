"""Application manifests (flmctl register/update -f): Flame's format and the messages for bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from flame.cli._manifest import load_manifests, parse_manifests
from flame.errors import InvalidArgument
from flame.types import Shim

TWO_APPS = """
metadata:
  name: pricer
spec:
  shim: host
  description: prices trades
  labels: [risk]
  command: /usr/bin/python3
  arguments: [-m, pricer, 8080]
  environments:
    LOG_LEVEL: debug
    WORKERS: 4
  working_directory: /opt/pricer
  max_instances: 10
  delay_release: 60
  url: file:///opt/pricer
  schema:
    input: {type: object}
    output: '{"type": "number"}'
---
metadata:
  name: legacy
spec:
  command: /bin/legacy
  environments:
    - name: A
      value: "1"
    - name: B
      value: two
---
"""


def refused(text: str) -> str:
    with pytest.raises(InvalidArgument) as info:
        parse_manifests(text, "apps.yaml")
    return info.value.message


def test_several_documents_in_flames_format() -> None:
    first, second = parse_manifests(TWO_APPS, "apps.yaml")
    assert (first.name, first.document, second.name, second.document) == ("pricer", 1, "legacy", 2)
    spec = first.spec
    assert spec.shim == Shim.HOST and spec.command == "/usr/bin/python3"
    assert spec.arguments == ["-m", "pricer", "8080"]
    assert spec.environments == {"LOG_LEVEL": "debug", "WORKERS": "4"}
    assert (spec.max_instances, spec.delay_release, spec.labels) == (10, 60, ["risk"])
    assert spec.schema is not None and spec.schema.input == '{"type": "object"}'
    assert spec.schema.output == '{"type": "number"}' and spec.schema.common_data is None
    assert second.spec.environments == {"A": "1", "B": "two"}


def test_errors_name_the_document_and_the_key() -> None:
    typo = "metadata: {name: a}\nspec: {command: x}\n---\nmetadata: {name: b}\nspec: {commmand: x}\n"
    message = refused(typo)
    assert message.startswith("apps.yaml: document 2: spec.commmand: unknown key (did you mean 'command'?)")
    assert "accepted keys: shim, description" in message
    assert refused("metadata: {name: a}\nspec: {max_instances: lots}").startswith(
        "apps.yaml: document 1: spec.max_instances: expected a whole number from 0 to 4294967295, got a string"
    )
    assert "spec.environments[1]: expected a mapping with exactly the keys name and value" in refused(
        "metadata: {name: a}\nspec:\n  environments: [{name: A, value: x}, {name: B}]\n"
    )
    assert 'spec.environments.DEBUG: expected a string, got a boolean (True); quote it, e.g. "true"' in refused(
        "metadata: {name: a}\nspec: {environments: {DEBUG: true}}"
    )
    assert "spec.shim: expected one of: host, wasm" in refused("metadata: {name: a}\nspec: {shim: cri}")
    assert "spec.arguments: expected a list of strings, got a string" in refused(
        "metadata: {name: a}\nspec: {arguments: -v}"
    )
    assert "spec.schema.inputs: unknown key" in refused("metadata: {name: a}\nspec: {schema: {inputs: x}}")


def test_metadata_and_names_are_checked_before_anything_is_registered() -> None:
    assert refused("spec: {command: x}") == "apps.yaml: document 1: metadata: expected a mapping of keys, got nothing"
    assert "metadata.name: expected 1-128 letters, digits" in refused("metadata: {name: 'a b'}")
    assert "unknown key (did you mean 'metadata'?)" in refused("metdata: {name: a}")
    assert "document 2: metadata.name: application 'a' is defined already in document 1" in refused(
        "metadata: {name: a}\n---\nmetadata: {name: a}\n"
    )
    assert "expected a mapping with metadata" in refused("- just\n- a list\n")
    assert "no application in the file" in refused("")


def test_yaml_syntax_errors_and_duplicate_keys_give_the_line() -> None:
    assert refused("metadata: {name: a}\nspec: {command: x\n").startswith("apps.yaml: invalid YAML at line 3")
    assert refused("metadata: {name: a}\nspec: {command: x, command: y}\n") == (
        "apps.yaml: invalid YAML at line 2, column 20: key 'command' is given twice"
    )


def test_files_that_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="no such file"):
        load_manifests(str(tmp_path / "missing.yaml"))
    with pytest.raises(InvalidArgument, match="is a directory"):
        load_manifests(str(tmp_path))
    path = tmp_path / "app.yaml"
    path.write_text("metadata: {name: a}\nspec: {command: /bin/a}\n")
    assert [m.name for m in load_manifests(str(path))] == ["a"]
