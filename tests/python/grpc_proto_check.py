"""Checks serve's proto/grpc_service.proto against Triton's published definition, as compiled
into the installed `tritonclient.grpc` (service_pb2): every message, field and RPC we declare
must exist there with the same number, type and cardinality, so that Triton's clients read our
answers and we read their requests.

usage: grpc_proto_check.py PATH/TO/grpc_service.proto
Prints one JSON object {"messages", "fields", "rpcs", "mismatches": [...]}; exits 1 on any
mismatch.
"""
import json
import re
import sys

from google.protobuf.descriptor import FieldDescriptor as FD
from tritonclient.grpc import service_pb2

SCALARS = {
    "bool": FD.TYPE_BOOL, "int32": FD.TYPE_INT32, "int64": FD.TYPE_INT64, "uint32": FD.TYPE_UINT32,
    "uint64": FD.TYPE_UINT64, "float": FD.TYPE_FLOAT, "double": FD.TYPE_DOUBLE, "string": FD.TYPE_STRING,
    "bytes": FD.TYPE_BYTES,
}

text = re.sub(r"//[^\n]*", "", open(sys.argv[1]).read())
tokens = re.findall(r"map<\s*\w+\s*,\s*[\w.]+\s*>|[\w.]+|[{}=;()]", text)

messages = {}  # full name -> {field: (number, type, repeated)}
rpcs = {}  # name -> (request, response)
stack, i, package = [], 0, ""
while i < len(tokens):
    t = tokens[i]
    if t == "package":
        package = tokens[i + 1]
        i += 3
    elif t == "message":
        stack.append(tokens[i + 1])
        messages[".".join([package] + stack)] = {}
        i += 3
    elif t in ("oneof", "service"):
        stack.append(None)
        i += 3
    elif t == "rpc":
        rpcs[tokens[i + 1]] = (tokens[i + 3], tokens[i + 7])
        i += 11  # rpc NAME ( REQ ) returns ( RESP ) { }
    elif t == "}":
        stack.pop()
        i += 1
    elif t in ("syntax",):
        i += 4
    elif t == "{" or t == ";":
        i += 1
    else:  # a field: [repeated] TYPE NAME = N ;
        repeated = t == "repeated"
        if repeated:
            i += 1
        ftype, name, number = tokens[i], tokens[i + 1], int(tokens[i + 3])
        owner = ".".join([package] + [s for s in stack if s])
        messages[owner][name] = (number, ftype, repeated or ftype.startswith("map<"))
        i += 5

mismatches = []
pool = service_pb2.DESCRIPTOR.pool
for full, fields in messages.items():
    try:
        desc = pool.FindMessageTypeByName(full)
    except KeyError:
        mismatches.append(f"message {full}: not in Triton's proto")
        continue
    for name, (number, ftype, repeated) in fields.items():
        theirs = desc.fields_by_name.get(name)
        if theirs is None:
            mismatches.append(f"{full}.{name}: no such field in Triton's proto")
            continue
        if theirs.number != number:
            mismatches.append(f"{full}.{name}: number {number}, Triton's is {theirs.number}")
        if (theirs.label == FD.LABEL_REPEATED) != repeated:
            mismatches.append(f"{full}.{name}: repeated={repeated}, Triton's differs")
        if ftype in SCALARS:
            if theirs.type != SCALARS[ftype]:
                mismatches.append(f"{full}.{name}: type {ftype} differs from Triton's")
        elif ftype.startswith("map<"):
            value = ftype[4:-1].split(",")[1].strip()
            entry = theirs.message_type
            if entry is None or not entry.GetOptions().map_entry:
                mismatches.append(f"{full}.{name}: a map here, not in Triton's proto")
            elif entry.fields_by_name["value"].message_type is not None and not entry.fields_by_name["value"].message_type.full_name.endswith(value):
                mismatches.append(f"{full}.{name}: map of {value}, Triton's maps to {entry.fields_by_name['value'].message_type.full_name}")
        elif theirs.message_type is None or not theirs.message_type.full_name.endswith(ftype):
            mismatches.append(f"{full}.{name}: type {ftype} differs from Triton's")

service = pool.FindServiceByName("inference.GRPCInferenceService")
for name, (req, resp) in rpcs.items():
    method = service.methods_by_name.get(name)
    if method is None:
        mismatches.append(f"rpc {name}: not in Triton's service")
    elif method.input_type.full_name != f"{package}.{req}" or method.output_type.full_name != f"{package}.{resp}":
        mismatches.append(f"rpc {name}: ({req}) returns ({resp}) differs from Triton's")

nfields = sum(len(f) for f in messages.values())
print(json.dumps({"messages": len(messages), "fields": nfields, "rpcs": len(rpcs), "mismatches": mismatches}))
sys.exit(1 if mismatches else 0)
