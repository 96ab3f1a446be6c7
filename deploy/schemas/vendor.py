"""Writes the JSON schemas of the custom resources our manifests use, from their projects' CRDs,
as gzip'd JSON beside this script (the check runs offline; the CRDs are large and repetitive).

usage: vendor.py CRD.yaml [CRD.yaml ...]
Each CRD gives one file per served version: GROUP_KIND_VERSION.json.gz holding that version's
openAPIV3Schema. Sources used (record a new one here when re-vendoring):
  KServe kserve/kserve@aaac4e294 (v0.20.0-rc0+104): config/crd/full/serving.kserve.io_servingruntimes.yaml,
      config/crd/full/serving.kserve.io_inferenceservices.yaml
  prometheus-operator@6adcebc50 (v0.93.0+24): example/prometheus-operator-crd-full/monitoring.coreos.com_podmonitors.yaml
"""
import gzip
import json
import pathlib
import sys

import yaml

here = pathlib.Path(__file__).parent
for path in sys.argv[1:]:
    crd = yaml.safe_load(open(path))
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    for version in crd["spec"]["versions"]:
        if not version.get("served", True):
            continue
        name = f"{group}_{kind}_{version['name']}.json.gz".lower()
        schema = version["schema"]["openAPIV3Schema"]
        with gzip.open(here / name, "wt", compresslevel=9) as out:
            json.dump(schema, out, sort_keys=True, separators=(",", ":"))
        print(f"wrote {name}")
