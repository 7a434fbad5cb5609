"""Write gateway/fhir/definitions/resource_types.json: the R4 resource types the gateway accepts.

Usage: python tools/gen_resource_types.py PATH/TO/hl7.fhir.r4.examples-4.0.1/package

Accepted = every concrete R4 resource type that fhir.resources also models in R4B, less the types
R4B redesigned (an R4 instance of those would not validate or would validate as something else).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fhir.resources.R4B import get_fhir_model_class

REDESIGNED_IN_R4B = {"Evidence", "EvidenceVariable"}
OUT = Path(__file__).parent.parent / "gateway" / "fhir" / "definitions" / "resource_types.json"


def main(package: Path) -> None:
    accepted, rejected = [], []
    for path in sorted(package.glob("StructureDefinition-*.json")):
        sd = json.loads(path.read_text())
        if sd.get("kind") != "resource" or sd.get("derivation") != "specialization":
            continue
        if sd.get("abstract"):
            continue
        try:
            get_fhir_model_class(sd["type"])
        except (KeyError, ValueError, ImportError, AttributeError):
            rejected.append(sd["type"])
            continue
        (rejected if sd["type"] in REDESIGNED_IN_R4B else accepted).append(sd["type"])
    OUT.write_text(json.dumps(sorted(accepted), separators=(",", ":")))
    print(f"{len(accepted)} accepted; not accepted: {', '.join(sorted(rejected))}", file=sys.stderr)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
