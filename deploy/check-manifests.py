"""Validates every manifest under deploy/ offline.

Kubernetes kinds: against the Kubernetes OpenAPI schemas bundled in `kubernetes-validate` (PyPI),
strict (an unknown field fails). Custom resources (KServe ServingRuntime / InferenceService,
prometheus-operator PodMonitor): against the schemas vendored in deploy/schemas/ from the
projects' CRDs, made strict the same way (unknown fields fail where the CRD does not preserve
them). kustomization.yaml: every resource it lists exists and validates, and its image names
one the manifests use.

usage: check-manifests.py [--kubernetes-version 1.37.0]
Prints one line per document and exits 1 if any fails.
"""
import argparse
import copy
import gzip
import json
import pathlib
import sys

import jsonschema
import kubernetes_validate
import yaml

DEPLOY = pathlib.Path(__file__).resolve().parent
SCHEMAS = DEPLOY / "schemas"


def strict(schema):
    """additionalProperties: false wherever properties are listed and unknown fields are not kept."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def custom_schema(api_version, kind):
    group, _, version = api_version.partition("/")
    path = SCHEMAS / f"{group}_{kind}_{version}.json.gz".lower()
    if not path.exists():
        return None
    with gzip.open(path, "rt") as f:
        return strict(json.load(f))


def check(path, doc, k8s_version):
    """An error message, or None."""
    api_version, kind = doc.get("apiVersion", ""), doc.get("kind", "")
    if not api_version or not kind:
        return "no apiVersion or kind"
    schema = custom_schema(api_version, kind)
    if schema is not None:
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=lambda e: list(e.path))
        return "; ".join(f"{'.'.join(map(str, e.path)) or '(top)'}: {e.message}" for e in errors[:5]) or None
    group = api_version.split("/")[0] if "/" in api_version else ""
    if "." in group and not group.endswith(".k8s.io"):
        return f"no schema for {kind} ({api_version}): vendor its CRD with deploy/schemas/vendor.py"
    try:
        kubernetes_validate.validate(doc, k8s_version, strict=True)
    except kubernetes_validate.ValidationError as e:
        return f"{'.'.join(map(str, e.path)) or '(top)'}: {e.message}"
    except kubernetes_validate.SchemaNotFoundError as e:
        return str(e)
    return None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--kubernetes-version", default="1.37.0")
    args = parser.parse_args()
    failures = 0
    images = set()
    kustomizations = []
    for path in sorted(DEPLOY.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            if doc.get("kind") == "Kustomization":
                kustomizations.append((path, doc))
                continue
            for container in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
                images.add(container["image"].rsplit(":", 1)[0])
            error = check(path, doc, args.kubernetes_version)
            name = f"{path.relative_to(DEPLOY.parent)} {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            print(f"{'FAIL' if error else 'ok  '} {name}{': ' + error if error else ''}")
            failures += bool(error)
    for path, doc in kustomizations:
        problems = [f"resource {r} does not exist" for r in doc.get("resources", []) if not (path.parent / r).is_file()]
        problems += [f"image {i['name']} is used by no manifest" for i in doc.get("images", []) if i["name"] not in images]
        print(f"{'FAIL' if problems else 'ok  '} {path.relative_to(DEPLOY.parent)} Kustomization{': ' + '; '.join(problems) if problems else ''}")
        failures += bool(problems)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
