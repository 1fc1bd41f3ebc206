#!/usr/bin/env python3
"""Check that proto/ is wire-compatible with TF Serving 2.21 / TensorFlow 2.21.

Ground truth: the serialized FileDescriptorProtos embedded in the *_pb2.py
modules of the PyPI wheels tensorflow-serving-api and tensorflow-cpu (read
straight out of the wheel zips; nothing is imported or installed).

Steps:
  1. compile proto/**/*.proto with grpc_tools.protoc into a FileDescriptorSet;
  2. for every message / enum / service defined both in our set and in the
     wheels, compare fields (name, number, type, label, type_name, oneof,
     proto3 optional, packed, json name, map-entry), enum values and service
     methods; fields or messages we omit on purpose are listed as "trimmed";
  3. messages with no descriptor in the wheels are checked against facts from
     shared/spec/tf-serving-api.md (SPEC_ONLY below).

Exit status is 1 on any mismatch.

Usage:  python3 scripts/check_protos.py [--wheels DIR] [--verbose]
Needs:  pip install -r scripts/requirements-protos.txt
"""

import argparse
import ast
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from google.protobuf import descriptor_pb2 as dpb

FDP = dpb.FieldDescriptorProto
TYPE_NAMES = {v: k[len("TYPE_"):].lower() for k, v in FDP.Type.items()}
LABEL_NAMES = {v: k[len("LABEL_"):].lower() for k, v in FDP.Label.items()}

TF_VERSION = "2.21.0"
WHEELS = [
    # (pip requirement, extra pip args, glob for the wheel file)
    (f"tensorflow-serving-api=={TF_VERSION}", [], "tensorflow_serving_api-*.whl"),
    # The pb2 modules are identical on every platform; pin one so the download
    # does not depend on the local interpreter.
    (f"tensorflow-cpu=={TF_VERSION}",
     ["--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp",
      "--abi", "cp311", "--platform", "manylinux_2_27_x86_64"],
     "tensorflow_cpu-*.whl"),
]

# Fields we deliberately leave out: (message full name, field number) -> reason.
# Our own additions to upstream messages, with numbers far from TF's; TF clients skip them.
EXTENSION_FIELDS = {}

TRIMMED_FIELDS = {
    (".tensorflow.MetaGraphDef", 2): "graph_def (GraphDef pulls in graph/node_def/function/attr_value)",
    (".tensorflow.MetaGraphDef", 3): "saver_def (not needed for serving)",
    (".tensorflow.MetaGraphDef", 4): "collection_def (TF1 collections, not needed)",
    (".tensorflow.MetaGraphDef", 6): "asset_file_def (not needed)",
    (".tensorflow.MetaGraphDef", 7): "object_graph_def (SavedObjectGraph is huge)",
    (".tensorflow.MetaGraphDef.MetaInfoDef", 2): "stripped_op_list (OpList needs op_def.proto)",
    (".tensorflow.serving.PredictionLog", 5): "session_run_log (SessionRunRequest needs TF config.proto)",
}

# Whole messages we deliberately leave out of files we do provide.
TRIMMED_MESSAGES = {
    ".tensorflow.CollectionDef": "only referenced by trimmed MetaGraphDef.collection_def",
    ".tensorflow.AssetFileDef": "only referenced by trimmed MetaGraphDef.asset_file_def",
    ".tensorflow.serving.SessionRunLog": "needs SessionRunRequest/Response (TF config.proto)",
}

# Files whose package legitimately differs from the upstream file of the same
# name. Upstream tensorflow/core/protobuf/error_codes.proto is a shim in package
# tensorflow.error.dummy that re-exports xla/tsl/protobuf/error_codes.proto; we
# define tensorflow.error.Code directly (same full name, so same wire/JSON).
PACKAGE_EXCEPTIONS = {"tensorflow/core/protobuf/error_codes.proto"}

# Messages with no descriptor in the wheels, checked against the spec
# (shared/spec/tf-serving-api.md sections 4.2-4.4):
# name -> [(field name, number, label, type, type_name)]
_W = ".google.protobuf."
SPEC_ONLY = {
    ".tensorflow.serving.PrometheusConfig": [
        ("enable", 1, "optional", "bool", ""),
        ("path", 2, "optional", "string", ""),
    ],
    ".tensorflow.serving.MonitoringConfig": [
        ("prometheus_config", 1, "optional", "message", ".tensorflow.serving.PrometheusConfig"),
    ],
    ".tensorflow.serving.SSLConfig": [
        ("server_key", 1, "optional", "string", ""),
        ("server_cert", 2, "optional", "string", ""),
        ("custom_ca", 3, "optional", "string", ""),
        ("client_verify", 4, "optional", "bool", ""),
    ],
    ".tensorflow.serving.BatchingParameters": [
        ("max_batch_size", 1, "optional", "message", _W + "Int64Value"),
        ("batch_timeout_micros", 2, "optional", "message", _W + "Int64Value"),
        ("max_enqueued_batches", 3, "optional", "message", _W + "Int64Value"),
        ("num_batch_threads", 4, "optional", "message", _W + "Int64Value"),
        ("thread_pool_name", 5, "optional", "message", _W + "StringValue"),
        ("allowed_batch_sizes", 6, "repeated", "int64", ""),
        ("pad_variable_length_inputs", 7, "optional", "bool", ""),
        ("enable_large_batch_splitting", 8, "optional", "message", _W + "BoolValue"),
        ("max_execution_batch_size", 9, "optional", "message", _W + "Int64Value"),
    ],
}

# The service paths of spec section 2.2 (also checked against the wheels).
SPEC_METHODS = {
    ".tensorflow.serving.PredictionService": {
        "Classify": ("ClassificationRequest", "ClassificationResponse"),
        "Regress": ("RegressionRequest", "RegressionResponse"),
        "Predict": ("PredictRequest", "PredictResponse"),
        "MultiInference": ("MultiInferenceRequest", "MultiInferenceResponse"),
        "GetModelMetadata": ("GetModelMetadataRequest", "GetModelMetadataResponse"),
    },
    ".tensorflow.serving.ModelService": {
        "GetModelStatus": ("GetModelStatusRequest", "GetModelStatusResponse"),
        "HandleReloadConfigRequest": ("ReloadConfigRequest", "ReloadConfigResponse"),
    },
}

PACKABLE = {
    FDP.TYPE_DOUBLE, FDP.TYPE_FLOAT, FDP.TYPE_INT64, FDP.TYPE_UINT64, FDP.TYPE_INT32,
    FDP.TYPE_FIXED64, FDP.TYPE_FIXED32, FDP.TYPE_BOOL, FDP.TYPE_UINT32, FDP.TYPE_ENUM,
    FDP.TYPE_SFIXED32, FDP.TYPE_SFIXED64, FDP.TYPE_SINT32, FDP.TYPE_SINT64,
}


# ---------------------------------------------------------------- reference

def ensure_wheels(wheel_dir: Path):
    wheel_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for req, extra, pattern in WHEELS:
        found = sorted(wheel_dir.glob(pattern))
        if not found:
            print(f"downloading {req} into {wheel_dir} ...", flush=True)
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                 "--disable-pip-version-check", "-d", str(wheel_dir), req, *extra],
                check=True)
            found = sorted(wheel_dir.glob(pattern))
        if not found:
            sys.exit(f"error: no wheel matching {pattern} in {wheel_dir}")
        paths.append(found[-1])
    return paths


def serialized_files(py_source: str):
    """Yield the bytes passed to AddSerializedFile(...) in a *_pb2.py module."""
    for node in ast.walk(ast.parse(py_source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "AddSerializedFile" and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, bytes)):
            yield node.args[0].value


def load_reference(wheels):
    files = {}
    for whl in wheels:
        with zipfile.ZipFile(whl) as zf:
            for name in zf.namelist():
                if not name.endswith("_pb2.py"):
                    continue
                if not name.startswith(("tensorflow/", "tensorflow_serving/")):
                    continue
                src = zf.read(name).decode("utf-8")
                for blob in serialized_files(src):
                    fd = dpb.FileDescriptorProto.FromString(blob)
                    files.setdefault(fd.name, fd)
    return files


# ---------------------------------------------------------------- ours

def compile_ours(proto_root: Path, out: Path):
    from grpc_tools import protoc
    import grpc_tools
    wkt = Path(grpc_tools.__file__).parent / "_proto"
    protos = sorted(str(p.relative_to(proto_root)) for p in proto_root.rglob("*.proto"))
    if not protos:
        sys.exit(f"error: no .proto files under {proto_root}")
    args = ["protoc", f"-I{proto_root}", f"-I{wkt}", f"--descriptor_set_out={out}",
            "--include_imports", *protos]
    if protoc.main(args) != 0:
        sys.exit("error: protoc failed on our protos")
    fds = dpb.FileDescriptorSet.FromString(out.read_bytes())
    return {f.name: f for f in fds.file if not f.name.startswith("google/protobuf/")}, protos


# ---------------------------------------------------------------- indexing

def index(files):
    """full name -> (kind, descriptor proto, file descriptor)."""
    out = {}

    def walk_msg(m, prefix, fd):
        full = f"{prefix}.{m.name}"
        out[full] = ("message", m, fd)
        for n in m.nested_type:
            walk_msg(n, full, fd)
        for e in m.enum_type:
            out[f"{full}.{e.name}"] = ("enum", e, fd)

    for fd in files.values():
        prefix = "." + fd.package if fd.package else ""
        for m in fd.message_type:
            walk_msg(m, prefix, fd)
        for e in fd.enum_type:
            out[f"{prefix}.{e.name}"] = ("enum", e, fd)
        for s in fd.service:
            out[f"{prefix}.{s.name}"] = ("service", s, fd)
    return out


def camel(name):
    # protoc's default json_name: drop '_' and upper-case the next letter.
    out, up = [], False
    for ch in name:
        if ch == "_":
            up = True
        elif up:
            out.append(ch.upper())
            up = False
        else:
            out.append(ch)
    return "".join(out)


def field_facts(f, msg, fd):
    oneof = ""
    if f.HasField("oneof_index"):
        oneof = msg.oneof_decl[f.oneof_index].name
    syntax = fd.syntax or "proto2"
    packed = False
    if f.label == FDP.LABEL_REPEATED and f.type in PACKABLE:
        if f.options.HasField("packed"):
            packed = f.options.packed
        else:
            packed = syntax == "proto3"
    return {
        "name": f.name,
        "type": TYPE_NAMES[f.type],
        "label": LABEL_NAMES[f.label],
        "type_name": f.type_name,
        "oneof": oneof,
        "proto3_optional": f.proto3_optional,
        "packed": packed,
        "json_name": f.json_name if f.HasField("json_name") and f.json_name else camel(f.name),
    }


# ---------------------------------------------------------------- comparison

class Report:
    def __init__(self):
        self.errors, self.trimmed, self.info = [], [], []
        self.counts = {"message": 0, "enum": 0, "service": 0, "field": 0,
                       "enum value": 0, "method": 0, "spec-only message": 0}

    def err(self, msg):
        self.errors.append(msg)


def compare_message(full, ours, theirs, ours_fd, theirs_fd, rep):
    rep.counts["message"] += 1
    if ours.options.map_entry != theirs.options.map_entry:
        rep.err(f"{full}: map_entry ours={ours.options.map_entry} ref={theirs.options.map_entry}")
    ref_by_num = {f.number: f for f in theirs.field}
    ref_by_name = {f.name: f for f in theirs.field}
    for f in ours.field:
        rf = ref_by_num.get(f.number)
        if rf is None and (full, f.number) in EXTENSION_FIELDS:
            rep.info.append(f"{full}.{f.name} = {f.number}: {EXTENSION_FIELDS[(full, f.number)]}")
            continue
        if rf is None:
            other = ref_by_name.get(f.name)
            hint = f" (ref has '{f.name}' = {other.number})" if other else ""
            rep.err(f"{full}.{f.name} = {f.number}: no such field number upstream{hint}")
            continue
        rep.counts["field"] += 1
        a = field_facts(f, ours, ours_fd)
        b = field_facts(rf, theirs, theirs_fd)
        for key in a:
            if a[key] != b[key]:
                rep.err(f"{full} field {f.number} ({f.name}): {key} ours={a[key]!r} ref={b[key]!r}")
    ours_nums = {f.number for f in ours.field}
    for rf in theirs.field:
        if rf.number in ours_nums:
            continue
        why = TRIMMED_FIELDS.get((full, rf.number))
        if why:
            rep.trimmed.append(f"{full}.{rf.name} = {rf.number}: {why}")
        else:
            rep.err(f"{full}: missing field {rf.name} = {rf.number} "
                    f"({LABEL_NAMES[rf.label]} {TYPE_NAMES[rf.type]} {rf.type_name})")
    # Oneof groups (real ones) must match by name.
    def real_oneofs(m):
        names = set()
        for f in m.field:
            if f.HasField("oneof_index") and not f.proto3_optional:
                names.add(m.oneof_decl[f.oneof_index].name)
        return names
    trimmed_nums = {n for (m, n) in TRIMMED_FIELDS if m == full}
    ref_oneofs = set()
    for f in theirs.field:
        if f.HasField("oneof_index") and not f.proto3_optional and f.number not in trimmed_nums:
            ref_oneofs.add(theirs.oneof_decl[f.oneof_index].name)
    if real_oneofs(ours) != ref_oneofs:
        rep.err(f"{full}: oneofs ours={sorted(real_oneofs(ours))} ref={sorted(ref_oneofs)}")


def compare_enum(full, ours, theirs, rep):
    rep.counts["enum"] += 1
    a = {v.name: v.number for v in ours.value}
    b = {v.name: v.number for v in theirs.value}
    rep.counts["enum value"] += len(a)
    for name in sorted(set(a) | set(b), key=lambda n: b.get(n, a.get(n))):
        if name not in a:
            rep.err(f"{full}: missing value {name} = {b[name]}")
        elif name not in b:
            rep.err(f"{full}: extra value {name} = {a[name]} (not upstream)")
        elif a[name] != b[name]:
            rep.err(f"{full}.{name}: ours={a[name]} ref={b[name]}")


def compare_service(full, ours, theirs, rep):
    rep.counts["service"] += 1
    a = {m.name: m for m in ours.method}
    b = {m.name: m for m in theirs.method}
    for name in sorted(set(a) | set(b)):
        if name not in a:
            rep.err(f"{full}: missing method {name}")
            continue
        if name not in b:
            rep.err(f"{full}: extra method {name} (not upstream)")
            continue
        rep.counts["method"] += 1
        x, y = a[name], b[name]
        for key in ("input_type", "output_type", "client_streaming", "server_streaming"):
            if getattr(x, key) != getattr(y, key):
                rep.err(f"{full}/{name}: {key} ours={getattr(x, key)!r} ref={getattr(y, key)!r}")


def check_spec_only(full, ours, rep):
    rep.counts["spec-only message"] += 1
    want = {n: (name, lab, typ, tn) for name, n, lab, typ, tn in SPEC_ONLY[full]}
    got = {f.number: (f.name, LABEL_NAMES[f.label], TYPE_NAMES[f.type], f.type_name)
           for f in ours.field}
    for n in sorted(set(want) | set(got)):
        if n not in got:
            rep.err(f"{full}: missing field {want[n][0]} = {n} (spec)")
        elif n not in want:
            rep.err(f"{full}: field {got[n][0]} = {n} not in spec")
        elif got[n] != want[n]:
            rep.err(f"{full} field {n}: ours={got[n]} spec={want[n]}")
        else:
            rep.counts["field"] += 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    repo = Path(__file__).resolve().parent.parent
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    ap.add_argument("--proto-root", type=Path, default=repo / "proto")
    ap.add_argument("--wheels", type=Path, default=cache / "onnx-serving" / "tf-wheels",
                    help="directory holding (or to receive) the two wheels")
    ap.add_argument("--verbose", "-v", action="store_true")
    args = ap.parse_args()

    ref_files = load_reference(ensure_wheels(args.wheels))
    with tempfile.TemporaryDirectory() as tmp:
        our_files, protos = compile_ours(args.proto_root.resolve(), Path(tmp) / "ours.pb")
    print(f"compiled {len(protos)} .proto files; reference: {len(ref_files)} descriptors "
          f"from tensorflow-serving-api/tensorflow-cpu {TF_VERSION}")

    rep = Report()
    ours_idx, ref_idx = index(our_files), index(ref_files)

    # Map-entry types of trimmed map fields are reported with their field.
    trimmed_maps = {
        f.type_name
        for (m, n) in TRIMMED_FIELDS if m in ref_idx and ref_idx[m][0] == "message"
        for f in ref_idx[m][1].field if f.number == n
    }

    # File-level facts.
    for name, fd in sorted(our_files.items()):
        ref = ref_files.get(name)
        for opt in ("go_package", "java_package", "java_outer_classname"):
            if fd.options.HasField(opt):
                rep.err(f"{name}: has option {opt} (keep options minimal)")
        if ref is None:
            rep.info.append(f"{name}: no upstream descriptor (spec-only)")
            continue
        if fd.package != ref.package and name not in PACKAGE_EXCEPTIONS:
            rep.err(f"{name}: package ours={fd.package} ref={ref.package}")
        if (fd.syntax or "proto2") != (ref.syntax or "proto2"):
            rep.err(f"{name}: syntax ours={fd.syntax} ref={ref.syntax}")
        # Upstream definitions in this file that we do not define anywhere.
        for full, (kind, rdesc, rfd) in ref_idx.items():
            if rfd is not ref or full in ours_idx:
                continue
            # Nested types of trimmed messages are reported with their parent.
            if any(full.startswith(t + ".") for t in TRIMMED_MESSAGES):
                continue
            if full in trimmed_maps and kind == "message" and rdesc.options.map_entry:
                continue
            if full in TRIMMED_MESSAGES:
                rep.trimmed.append(f"{full} (message): {TRIMMED_MESSAGES[full]}")
            else:
                rep.err(f"{name}: upstream {kind} {full} is not defined")

    for full, (kind, ours, ofd) in sorted(ours_idx.items()):
        ref = ref_idx.get(full)
        if ref is None and full.startswith(".onnx_serving."):
            continue  # our own package, with no upstream
        if ref is None:
            if full in SPEC_ONLY:
                check_spec_only(full, ours, rep)
            else:
                rep.err(f"{full}: {kind} not upstream and no spec facts for it")
            continue
        rkind, theirs, rfd = ref
        if rkind != kind:
            rep.err(f"{full}: ours is a {kind}, upstream a {rkind}")
        elif kind == "message":
            compare_message(full, ours, theirs, ofd, rfd, rep)
        elif kind == "enum":
            compare_enum(full, ours, theirs, rep)
        else:
            compare_service(full, ours, theirs, rep)

    # Spec section 2.2 method paths.
    for svc, methods in SPEC_METHODS.items():
        entry = ours_idx.get(svc)
        if entry is None:
            rep.err(f"service {svc} missing")
            continue
        got = {m.name: (m.input_type, m.output_type) for m in entry[1].method}
        for name, (inp, outp) in methods.items():
            want = (f".tensorflow.serving.{inp}", f".tensorflow.serving.{outp}")
            if got.get(name) != want:
                rep.err(f"/{svc[1:]}/{name}: ours={got.get(name)} spec={want}")

    if args.verbose:
        for line in rep.info:
            print("info:", line)
    print(f"\ntrimmed on purpose ({len(rep.trimmed)}):")
    for line in sorted(rep.trimmed):
        print("  trimmed:", line)
    if rep.errors:
        print(f"\nMISMATCHES ({len(rep.errors)}):")
        for line in rep.errors:
            print("  MISMATCH:", line)
    c = rep.counts
    print(f"\nsummary: {c['message']} messages, {c['enum']} enums "
          f"({c['enum value']} values), {c['service']} services ({c['method']} methods), "
          f"{c['spec-only message']} spec-only messages, {c['field']} fields compared; "
          f"{len(rep.trimmed)} trimmed; {len(rep.errors)} mismatches")
    return 1 if rep.errors else 0


if __name__ == "__main__":
    sys.exit(main())
