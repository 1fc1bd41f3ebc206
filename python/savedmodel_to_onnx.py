#!/usr/bin/env python3
"""onnx-serving's SavedModel converter: one ONNX file per SignatureDef, plus manifest.json.

    python3 savedmodel_to_onnx.py --saved_model_dir=DIR --output_dir=OUT [--opset=15]

`onnx-serving convert` runs this script (it is compiled into the binary), and so does the
server for a `tensorflow` version without a conversion, when TensorFlow and tf2onnx are
installed (python/requirements-convert.txt pins them).

What it does beyond calling tf2onnx (docs/tensorflow.md explains each point):
- TF2 exports (with an object graph) load with tf.saved_model.load and freeze with
  convert_variables_to_constants_v2; TF1 exports load in a v1 Session and freeze there,
  which also runs their init op, so lookup tables are filled and exported.
- A signature whose outputs depend on ParseExample/ParseExampleV2 is cut after the parse op:
  the ONNX model takes the parsed features, and the feature spec (keys, dtypes, shapes,
  defaults, which are used) goes into the manifest, for the server to parse tf.Example.
- Every signature is converted by name. tf2onnx carries on past unsupported ops, so its log
  is watched, and each result must pass onnx.checker and load in onnxruntime; any failure
  stops the conversion with the signature and the reason.

Exit status 0 on success; 1 with `error: ...` on stderr otherwise.
"""
import argparse
import hashlib
import json
import logging
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Format 2: the inputs and outputs of plain (non-Example) signatures have no declared shape,
# so that ONNX Runtime, like TF's graphs, accepts any rank and leaves the checks to the ops.
MANIFEST_FORMAT = 2
PARSE_OPS = ("ParseExample", "ParseExampleV2")
REFUSED_PARSE_OPS = ("ParseSingleExample", "ParseSequenceExample", "ParseSequenceExampleV2",
                     "ParseSingleSequenceExample")
INIT_OP_SIGNATURE = "__saved_model_init_op"


class ConversionError(Exception):
    pass


def content_digest(saved_model_dir):
    """SHA-256 over saved_model.pb and variables/*, the cache key the server also computes."""
    digest = hashlib.sha256()
    paths = [os.path.join(saved_model_dir, "saved_model.pb")]
    variables = os.path.join(saved_model_dir, "variables")
    if os.path.isdir(variables):
        paths += sorted(os.path.join(variables, n) for n in os.listdir(variables))
    for path in paths:
        digest.update(os.path.relpath(path, saved_model_dir).encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


class UnsupportedOpWatcher(logging.Handler):
    """Collects tf2onnx's complaints that it otherwise only logs."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.problems = []

    def emit(self, record):
        text = record.getMessage()
        if "Unsupported ops" in text or "is not supported" in text or "Failed to convert node" in text:
            self.problems.append(text)


def tensor_of(graph, name):
    return graph.get_tensor_by_name(name if ":" in name else name + ":0")


def backward_ops(outputs, stop_tensors):
    """Ops the outputs depend on, not crossing the stop tensors (the signature's inputs)."""
    stop = {t.name for t in stop_tensors}
    seen, todo = set(), [t.op for t in outputs if t.name not in stop]
    ops = []
    while todo:
        op = todo.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        ops.append(op)
        for tensor in list(op.inputs) + [c.outputs[0] for c in op.control_inputs if c.outputs]:
            if tensor.name not in stop:
                todo.append(tensor.op)
    return ops


def through_identity(tensor):
    while tensor.op.type in ("Identity", "IdentityN") and tensor.op.inputs:
        tensor = tensor.op.inputs[0]
    return tensor


def dtype_name(dtype):
    import tensorflow as tf
    return {tf.float32: "float32", tf.int64: "int64", tf.string: "string"}[dtype]


def value_list(array, dtype):
    flat = array.reshape(-1).tolist()
    if dtype == "string":
        import base64
        return [base64.b64encode(v if isinstance(v, bytes) else str(v).encode()).decode() for v in flat]
    return flat


def example_spec(graph, parse_op, used_ops):
    """The feature spec of a parse op: every feature it parses, and which ones are used."""
    import tensorflow as tf
    v2 = parse_op.type == "ParseExampleV2"
    dense_types = parse_op.get_attr("Tdense")
    dense_shapes = parse_op.get_attr("dense_shapes")
    n_dense = len(dense_types)
    if v2:
        n_sparse = parse_op.get_attr("num_sparse")
        n_ragged = len(parse_op.get_attr("ragged_value_types"))
        sparse_keys_t, dense_keys_t = parse_op.inputs[2], parse_op.inputs[3]
        defaults_t = list(parse_op.inputs[5:5 + n_dense])
    else:
        n_sparse = parse_op.get_attr("Nsparse")
        n_ragged = 0
        sparse_keys_t = list(parse_op.inputs[2:2 + n_sparse])
        dense_keys_t = list(parse_op.inputs[2 + n_sparse:2 + n_sparse + n_dense])
        defaults_t = list(parse_op.inputs[2 + n_sparse + n_dense:2 + n_sparse + 2 * n_dense])
    # NOTE: keys and defaults can be computed (Reshape(Const)); evaluate them, never read Consts.
    with tf.compat.v1.Session(graph=graph) as sess:
        try:
            dense_keys, defaults = sess.run([dense_keys_t, defaults_t])
            sparse_keys = sess.run(sparse_keys_t)
        except Exception as error:  # noqa: BLE001
            raise ConversionError(f"the keys or defaults of {parse_op.name} depend on a request input: {error}")
    dense_keys = [k.decode() for k in (dense_keys.reshape(-1).tolist() if hasattr(dense_keys, "reshape") else dense_keys)]
    sparse_keys = [k.decode() for k in (sparse_keys.reshape(-1).tolist() if hasattr(sparse_keys, "reshape")
                                        else [s.reshape(-1)[0] if hasattr(s, "reshape") else s for s in sparse_keys])]
    used_names = {op.name for op in used_ops}
    features = []
    for index, key in enumerate(dense_keys):
        output = parse_op.outputs[3 * n_sparse + index]
        used = any(consumer.name in used_names for consumer in output.consumers())
        dtype = dtype_name(dense_types[index])
        shape = [d if d is not None else -1 for d in tf.TensorShape(dense_shapes[index]).as_list()]
        default = defaults[index]
        feature = {"key": key, "kind": "dense", "dtype": dtype, "shape": shape,
                   "variable_length": bool(shape and shape[0] == -1),
                   "default": None if default.size == 0 else value_list(default, dtype), "used": used,
                   "output": output.name}
        features.append(feature)
    for index, key in enumerate(sparse_keys):
        values = parse_op.outputs[n_sparse + index]
        used = any(c.name in used_names for t in (parse_op.outputs[index], values, parse_op.outputs[2 * n_sparse + index])
                   for c in t.consumers())
        if used:
            raise ConversionError(f"feature {key!r} is a VarLenFeature (sparse); onnx-serving parses dense features only")
        features.append({"key": key, "kind": "sparse", "dtype": dtype_name(values.dtype), "used": False})
    if n_ragged:
        ragged_start = 3 * n_sparse + n_dense
        for output in parse_op.outputs[ragged_start:]:
            if any(c.name in used_names for c in output.consumers()):
                raise ConversionError("a RaggedFeature is used; onnx-serving parses dense features only")
    return features


def find_parse_op(graph, outputs, inputs):
    ops = backward_ops(outputs, inputs)
    refused = [op for op in ops if op.type in REFUSED_PARSE_OPS]
    if refused:
        raise ConversionError(f"{refused[0].type} is not supported (only ParseExample/ParseExampleV2)")
    parse_ops = [op for op in ops if op.type in PARSE_OPS]
    for op in ops:
        if op.type in ("PartitionedCall", "StatefulPartitionedCall"):
            raise ConversionError(f"{op.name} is a function call the freezing did not inline")
    if len(parse_ops) > 1:
        raise ConversionError(f"{len(parse_ops)} parse ops feed the outputs; onnx-serving handles one")
    return (parse_ops[0] if parse_ops else None), ops


def cut_after_parse(graph_def, graph, parse_op, features, output_names):
    """A graph whose placeholders take the used dense features in place of the parse op."""
    import tensorflow as tf
    cut = tf.Graph()
    placeholders, renames = {}, {}
    with cut.as_default():
        input_map = {}
        for index, feature in enumerate(f for f in features if f["kind"] == "dense" and f["used"]):
            dtype = {"float32": tf.float32, "int64": tf.int64, "string": tf.string}[feature["dtype"]]
            shape = [None] + [None if d < 0 else d for d in feature["shape"]]
            placeholder = tf.compat.v1.placeholder(dtype, shape, name=f"tfex_in/f{index}")
            input_map[feature["output"]] = placeholder
            placeholders[feature["key"]] = placeholder.name
        tf.graph_util.import_graph_def(graph_def, input_map=input_map, name="")
    cut_def = tf.compat.v1.graph_util.extract_sub_graph(
        cut.as_graph_def(), sorted({n.split(":")[0] for n in output_names}))
    leftovers = [n.name for n in cut_def.node
                 if n.op in PARSE_OPS or (n.op == "Placeholder" and not n.name.startswith("tfex_in/"))]
    if leftovers:
        raise ConversionError(f"the outputs still need {leftovers} besides the parsed features "
                              "(the raw serialized Example or another input)")
    return cut_def, placeholders


def parsed_shape(tensor):
    """The shape of a tensor that is (an Identity of) a parse op's dense output: [None] +
    dense_shape. A TF1 graph whose serialized input has no rank leaves it unknown."""
    import tensorflow as tf
    source = through_identity(tensor)
    op = source.op
    if op.type in PARSE_OPS:
        n_sparse = op.get_attr("num_sparse") if op.type == "ParseExampleV2" else op.get_attr("Nsparse")
        index = source.value_index - 3 * n_sparse
        dense_shapes = op.get_attr("dense_shapes")
        if 0 <= index < len(dense_shapes):
            return tf.TensorShape([None] + tf.TensorShape(dense_shapes[index]).as_list())
    return tensor.shape


def cut_at_inputs(graph_def, graph, in_aliases, output_names, input_shapes):
    """A graph whose placeholders replace the signature's input tensors.

    NOTE: the placeholders take the shapes the loaded graph knew; tf2onnx treats a placeholder
    of unknown shape as a scalar, which breaks every op after it.
    """
    import tensorflow as tf
    cut = tf.Graph()
    placeholders = {}
    with cut.as_default():
        input_map = {}
        for index, alias in enumerate(sorted(in_aliases)):
            tensor = graph.get_tensor_by_name(in_aliases[alias])
            shape = input_shapes.get(alias, tensor.shape)
            if shape.rank is None:
                shape = parsed_shape(tensor)
            placeholder = tf.compat.v1.placeholder(tensor.dtype, shape, name=f"sig_in/i{index}")
            input_map[tensor.name] = placeholder
            placeholders[alias] = placeholder.name
        tf.graph_util.import_graph_def(graph_def, input_map=input_map, name="")
    # NOTE: the placeholders are kept even when no output needs them (a signature whose
    # outputs are constants, as in TF Serving's multiple-signature test): the signature still
    # takes its inputs.
    keep = {n.split(":")[0] for n in output_names} | {p.split(":")[0] for p in placeholders.values()}
    cut_def = tf.compat.v1.graph_util.extract_sub_graph(cut.as_graph_def(), sorted(keep))
    return cut_def, placeholders


def convert_graph(graph_def, input_names, output_names, renames, tables, opset, label):
    import tf2onnx
    from tf2onnx import tf_loader
    import tensorflow as tf
    watcher = UnsupportedOpWatcher()
    logger = logging.getLogger("tf2onnx")
    logger.addHandler(watcher)
    try:
        with tf.Graph().as_default():
            optimized = tf_loader.tf_optimize(input_names, output_names, graph_def)
        model, _ = tf2onnx.convert._convert_common(  # noqa: SLF001 (the only way to pass tables)
            optimized, name=label, continue_on_error=True, opset=opset, input_names=input_names,
            output_names=output_names, tensors_to_rename=renames, initialized_tables=tables)
    finally:
        logger.removeHandler(watcher)
    if watcher.problems:
        raise ConversionError("tf2onnx could not convert every op: " + "; ".join(watcher.problems))
    return model


def relax_shapes(model):
    """Drops the declared shapes of the graph's inputs and outputs.

    A TF graph does not check a fed tensor against its placeholder's shape (TF Serving runs
    half_plus_two's [-1, 1] input on a [3] tensor, and answers [3]); with no declared shapes
    ONNX Runtime does the same, and does not warn when an output's shape differs from the one
    inferred for the declared input. The signature's declared shapes stay in the SavedModel,
    for metadata. (onnx.checker wants shapes on the main graph: check before this.)"""
    for value in list(model.graph.input) + list(model.graph.output):
        if value.type.HasField("tensor_type"):
            value.type.tensor_type.ClearField("shape")


def finish_model(model, signature, method_name, spec):
    import onnx
    inferred = onnx.shape_inference.infer_shapes(model)
    by_name = {o.name: o for o in inferred.graph.output}
    for output in model.graph.output:
        if not output.type.tensor_type.HasField("shape") and output.name in by_name:
            output.type.CopyFrom(by_name[output.name].type)
    props = {"tfs.signature_name": signature, "tfs.method_name": method_name}
    if spec is not None:
        props["tfs.example_spec"] = json.dumps(spec)
    onnx.helper.set_model_props(model, props)
    return model


def verify(path, signature, check=True):
    import onnx
    import onnxruntime
    try:
        if check:
            onnx.checker.check_model(path, full_check=True)
        onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    except Exception as error:  # noqa: BLE001
        raise ConversionError(f"signature {signature}: the converted model does not load: {error}")


def load_tf1(saved_model_dir, tags):
    import tensorflow as tf
    graph = tf.Graph()
    sess = tf.compat.v1.Session(graph=graph)
    with graph.as_default():
        meta = tf.compat.v1.saved_model.loader.load(sess, tags, saved_model_dir)
    return graph, sess, meta


def table_contents(sess, graph_def):
    """Keys and values of every hash table of a frozen graph, read from the live session."""
    import tensorflow as tf
    tables = {}
    for node in graph_def.node:
        if node.op not in ("HashTableV2", "MutableHashTableV2"):
            continue
        shared_name = node.attr["shared_name"].s
        if not shared_name:
            raise ConversionError(f"lookup table {node.name} has no shared_name; tf2onnx cannot convert it")
        op = sess.graph.get_operation_by_name(node.name)
        with sess.graph.as_default():
            export = tf.raw_ops.LookupTableExportV2(
                table_handle=op.outputs[0], Tkeys=op.get_attr("key_dtype"), Tvalues=op.get_attr("value_dtype"))
        keys, values = sess.run(export)
        tables[shared_name] = (keys, values)
    return tables


def keep_unknown_shapes(graph_def, graph):
    """Marks placeholders whose shape the live graph does not know as unknown-rank.

    Old exports (producer <= 21) write `shape {}` for "unknown"; the loader honours that, but
    the GraphDef it gives back carries today's producer version, under which `{}` reads as a
    scalar, and re-importing it fails (`Shape must be rank 1 but is rank 0` at ParseExample).
    """
    for node in graph_def.node:
        if node.op != "Placeholder" or "shape" not in node.attr:
            continue
        live = graph.get_operation_by_name(node.name).outputs[0].shape
        if live.rank is None:
            node.attr["shape"].shape.Clear()
            node.attr["shape"].shape.unknown_rank = True


def convert_tf1(saved_model_dir, tags, signatures, opset):
    import tensorflow as tf
    graph, sess, meta = load_tf1(saved_model_dir, tags)
    results = {}
    for name in signatures:
        sig = meta.signature_def[name]
        in_aliases = {alias: info.name for alias, info in sig.inputs.items()}
        out_aliases = {alias: info.name for alias, info in sig.outputs.items()}
        outputs = [tensor_of(graph, out_aliases[a]) for a in sorted(out_aliases)]
        inputs = [tensor_of(graph, in_aliases[a]) for a in sorted(in_aliases)]
        parse_op, ops = find_parse_op(graph, outputs, inputs)
        out_nodes = sorted({t.op.name for t in outputs})
        frozen = tf.compat.v1.graph_util.convert_variables_to_constants(sess, graph.as_graph_def(), out_nodes)
        keep_unknown_shapes(frozen, graph)
        tables = table_contents(sess, frozen)
        results[name] = finish_signature(name, sig, frozen, parse_op, ops, inputs, outputs,
                                         in_aliases, out_aliases, tables, opset)
    sess.close()
    return results


def convert_tf2(saved_model_dir, tags, signatures, opset):
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
    import hashlib
    loaded = tf.saved_model.load(saved_model_dir, tags=tags)
    results = {}
    # NOTE: Keras 3's export() writes `serve` and `serving_default` of one function; their
    # frozen graphs are the same bytes, so the conversion is made once and shared.
    converted = {}
    for name in signatures:
        fn = loaded.signatures[name]
        frozen_fn = convert_variables_to_constants_v2(fn, lower_control_flow=False, aggressive_inlining=True)
        frozen = frozen_fn.graph.as_graph_def(add_shapes=True)
        same = hashlib.sha256(frozen.SerializeToString(deterministic=True))
        same.update(repr((sorted(fn.structured_input_signature[1]), sorted(fn.structured_outputs))).encode())
        key = same.hexdigest()
        if key in converted:
            results[name] = converted[key]
            continue
        graph = tf.Graph()
        with graph.as_default():
            tf.graph_util.import_graph_def(frozen, name="")
        arg_specs = fn.structured_input_signature[1]
        graph_inputs = [t for t in frozen_fn.inputs if t.dtype != tf.resource]
        in_aliases = {alias: tensor.name for alias, tensor in zip(sorted(arg_specs), graph_inputs)}
        out_keys = sorted(fn.structured_outputs)
        out_aliases = {alias: tensor.name for alias, tensor in zip(out_keys, frozen_fn.outputs)}
        outputs = [graph.get_tensor_by_name(out_aliases[a]) for a in out_keys]
        inputs = [graph.get_tensor_by_name(in_aliases[a]) for a in sorted(in_aliases)]
        parse_op, ops = find_parse_op(graph, outputs, inputs)
        sig_def = type("Sig", (), {"method_name": "tensorflow/serving/predict"})()
        results[name] = finish_signature(name, sig_def, frozen, parse_op, ops, inputs, outputs,
                                         in_aliases, out_aliases, {}, opset, graph=graph)
        converted[key] = results[name]
    return results


def finish_signature(name, sig, graph_def, parse_op, ops, inputs, outputs, in_aliases, out_aliases,
                     tables, opset, graph=None):
    input_shapes = {alias: tensor.shape for alias, tensor in zip(sorted(in_aliases), inputs)}
    import tensorflow as tf
    if graph is None:
        graph = tf.Graph()
        with graph.as_default():
            tf.graph_util.import_graph_def(graph_def, name="")
        parse_op = graph.get_operation_by_name(parse_op.name) if parse_op is not None else None
        ops = [graph.get_operation_by_name(op.name) for op in ops if op.name in
               {n.name for n in graph.get_operations()}]
    output_names = [out_aliases[a] for a in sorted(out_aliases)]
    renames = {out_aliases[a]: a for a in out_aliases}
    spec = None
    if parse_op is not None:
        serialized = through_identity(parse_op.inputs[0])
        alias = next((a for a, t in in_aliases.items() if graph.get_tensor_by_name(t) is serialized
                      or through_identity(graph.get_tensor_by_name(t)) is serialized), None)
        if alias is None:
            raise ConversionError(f"signature {name}: the serialized Examples do not come from a signature input")
        features = example_spec(graph, parse_op, ops)
        cut, placeholders = cut_after_parse(graph_def, graph, parse_op, features, output_names)
        input_names = list(placeholders.values())
        for key, placeholder in placeholders.items():
            renames[placeholder] = key if key not in out_aliases else f"feature:{key}"
        for feature in features:
            feature.pop("output", None)
            if feature["kind"] == "dense" and feature["used"]:
                feature["onnx_input"] = renames[placeholders[feature["key"]]]
        spec = {"serialized_input_key": alias, "parse_op": parse_op.type, "features": features}
        graph_def = cut
        inputs_map = {}
    else:
        # NOTE: cut at the signature's inputs too: a TF1 input can be an inner tensor (x:0 is
        # an Identity of the parse op in half_plus_two), and nothing upstream may remain.
        graph_def, placeholders = cut_at_inputs(graph_def, graph, in_aliases, output_names, input_shapes)
        input_names = [placeholders[a] for a in sorted(placeholders)]
        for alias, placeholder in placeholders.items():
            renames[placeholder] = alias if alias not in out_aliases else f"input:{alias}"
        inputs_map = {alias: renames[placeholders[alias]] for alias in placeholders}
    for tensor in outputs:
        if getattr(tensor.dtype, "_is_ref_dtype", False) or tensor.dtype.name.endswith("_ref") \
                or tensor.dtype == tf.resource:
            raise ConversionError(f"signature {name}: output {tensor.name} is a {tensor.dtype.name} "
                                  "(a stateful variable reference), which ONNX cannot express")
    model = convert_graph(graph_def, input_names, output_names, renames, tables, opset, name)
    return {"model": model, "method_name": sig.method_name, "inputs": inputs_map,
            "outputs": {alias: alias for alias in out_aliases}, "example_spec": spec}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saved_model_dir", required=True)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--tag", default="serve")
    parser.add_argument("--opset", type=int, default=15)
    parser.add_argument("--keep_declared_shapes", action="store_true",
                        help="keep the signatures' declared input shapes, so that ONNX Runtime checks "
                             "requests against them (and may optimise more) instead of running any rank as TF does")
    args = parser.parse_args(argv)
    try:
        import onnx
        import tensorflow as tf  # noqa: F401
        from tensorflow.core.protobuf import saved_model_pb2
    except ImportError as error:
        print(f"error: {error}; install the converter's packages: "
              "pip install -r python/requirements-convert.txt", file=sys.stderr)
        return 1
    pb = os.path.join(args.saved_model_dir, "saved_model.pb")
    try:
        saved_model = saved_model_pb2.SavedModel()
        with open(pb, "rb") as f:
            saved_model.ParseFromString(f.read())
        metas = [m for m in saved_model.meta_graphs if args.tag in m.meta_info_def.tags] or \
            list(saved_model.meta_graphs[:1])
        if not metas:
            raise ConversionError(f"{pb} holds no MetaGraph")
        meta = metas[0]
        tf2 = len(meta.object_graph_def.nodes) > 0
        signatures = sorted(k for k in meta.signature_def if k != INIT_OP_SIGNATURE)
        if not signatures:
            raise ConversionError("the SavedModel has no signatures")
        convert = convert_tf2 if tf2 else convert_tf1
        results = convert(args.saved_model_dir, [args.tag], signatures, args.opset)
        os.makedirs(args.output_dir, exist_ok=True)
        manifest = {"format": MANIFEST_FORMAT, "loader": "tf2" if tf2 else "tf1",
                    "source_sha256": content_digest(args.saved_model_dir),
                    "tensorflow": tf.__version__, "signatures": {}}
        import tf2onnx
        manifest["tf2onnx"] = tf2onnx.__version__
        written = {}
        for index, name in enumerate(signatures):
            result = results[name]
            lenient = result["example_spec"] is None and not args.keep_declared_shapes
            # NOTE: signatures that share a conversion share its file (and the server loads it once).
            shared = written.get(id(result))
            if shared is not None:
                file_name, lenient = shared
            else:
                file_name = f"signature_{index}.onnx"
                path = os.path.join(args.output_dir, file_name)
                model = finish_model(result["model"], name, result["method_name"], result["example_spec"])
                onnx.save(model, path)
                verify(path, name)
                if lenient:
                    declared = onnx.ModelProto()
                    declared.CopyFrom(model)
                    relax_shapes(model)
                    onnx.save(model, path)
                    try:
                        verify(path, name, check=False)
                    except ConversionError as error:
                        # NOTE: a graph ONNX Runtime only loads with its declared shapes keeps them.
                        print(f"warning: signature {name} keeps its declared input shapes: {error}", file=sys.stderr)
                        onnx.save(declared, path)
                        lenient = False
                written[id(result)] = (file_name, lenient)
            manifest["signatures"][name] = {"file": file_name, "inputs": result["inputs"],
                                            "outputs": result["outputs"],
                                            "example_spec": result["example_spec"], "lenient_shapes": lenient}
        with open(os.path.join(args.output_dir, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=1, sort_keys=True)
    except ConversionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # noqa: BLE001
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(f"converted {len(signatures)} signature(s) into {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
