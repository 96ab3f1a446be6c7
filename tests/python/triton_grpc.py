"""Drives `serve --grpc-bind --api-key-file` with the official Triton clients, gRPC and HTTP
side by side: health, metadata, inference, the model repository and statistics.

usage: triton_grpc.py HTTP_ADDR GRPC_ADDR MODEL SPARE INPUT.f32 N KEY
MODEL and SPARE are served models (SPARE is unloaded and loaded again); INPUT.f32 holds
N x 3 x 32 x 32 little-endian float32 values. Prints one JSON object (see the keys below) for
the Rust test to check; the client calls themselves raise on any unexpected failure.
"""
import json
import sys

import grpc
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

http_addr, grpc_addr, model, spare, path, n, key = sys.argv[1:8]
n = int(n)
x = np.fromfile(path, dtype="<f4").reshape(n, 3, 32, 32)
g = grpcclient.InferenceServerClient(url=grpc_addr)
h = httpclient.InferenceServerClient(url=http_addr, connection_timeout=30, network_timeout=120)
auth = {"authorization": "Bearer " + key}
out = {}


def failure(call):
    """The gRPC status (or HTTP status) a call fails with, and its message."""
    try:
        call()
    except InferenceServerException as e:
        return {"status": str(e.status()), "message": e.message()}
    return None


# Keys: health is open, everything else needs the right key.
out["live_without_key"] = g.is_server_live()
out["ready_without_key"] = g.is_server_ready()
out["grpc_no_key"] = failure(lambda: g.get_model_metadata(model))
out["grpc_wrong_key"] = failure(lambda: g.get_model_metadata(model, headers={"authorization": "Bearer nope"}))
out["http_no_key"] = failure(lambda: h.get_model_metadata(model))
out["http_wrong_key"] = failure(lambda: h.get_model_metadata(model, headers={"Authorization": "Bearer nope"}))

# Metadata.
out["server_metadata"] = g.get_server_metadata(headers=auth, as_json=True)
out["metadata"] = g.get_model_metadata(model, headers=auth, as_json=True)
out["model_ready"] = g.is_model_ready(model, headers=auth)


def grpc_infer(data):
    inp = grpcclient.InferInput("input", list(data.shape), "FP32")
    inp.set_data_from_numpy(data)  # raw_input_contents
    result = g.infer(model, [inp], outputs=[grpcclient.InferRequestedOutput("logits")], headers=auth, request_id="g1")
    assert result.get_response().id == "g1"
    return result.as_numpy("logits")


# Inference: raw_input_contents (the client's way), contents.fp32_contents (by hand), HTTP.
out["grpc_raw"] = grpc_infer(x).astype(np.float64).ravel().tolist()
stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(grpc_addr))
request = service_pb2.ModelInferRequest(model_name=model)
tensor = request.inputs.add(name="input", datatype="FP32", shape=list(x.shape))
tensor.contents.fp32_contents.extend(x.ravel().tolist())
reply = stub.ModelInfer(request, metadata=list(auth.items()))
out["grpc_contents"] = np.frombuffer(reply.raw_output_contents[0], dtype="<f4").astype(np.float64).tolist()
out["grpc_contents_shape"] = list(reply.outputs[0].shape)
inp = httpclient.InferInput("input", list(x.shape), "FP32")
inp.set_data_from_numpy(x, binary_data=True)
out["http"] = h.infer(model, [inp], headers={"Authorization": auth["authorization"]}).as_numpy("logits").astype(np.float64).ravel().tolist()


# Bad input: each fails with a status, and the server goes on serving.
def bad_infer(name, shape, datatype, raw):
    request = service_pb2.ModelInferRequest(model_name=name)
    request.inputs.add(name="input", datatype=datatype, shape=shape)
    request.raw_input_contents.append(raw)
    try:
        stub.ModelInfer(request, metadata=list(auth.items()))
    except grpc.RpcError as e:
        return {"status": e.code().name, "message": e.details()}
    return None


one = np.zeros((1, 3, 32, 32), dtype="<f4").tobytes()
out["bad"] = {
    "shape": bad_infer(model, [1, 3, 32, 31], "FP32", one[:-128]),
    "dtype": bad_infer(model, [1, 3, 32, 32], "FP64", one + one),
    "bytes": bad_infer(model, [1, 3, 32, 32], "FP32", one[:-1]),
    "model": bad_infer("no-such-model", [1, 3, 32, 32], "FP32", one),
    # 100 images: 1.2 MB, over the server's --max-body 1MiB.
    "too_large": bad_infer(model, [100, 3, 32, 32], "FP32", one * 100),
    "version": failure(lambda: g.get_model_metadata(model, model_version="7", headers=auth)),
}
out["after_bad"] = grpc_infer(x[:1]).astype(np.float64).ravel().tolist()

# The repository: index over both protocols, unload over gRPC, load over HTTP and gRPC.
hauth = {"Authorization": auth["authorization"]}
out["index_grpc"] = g.get_model_repository_index(headers=auth, as_json=True).get("models", [])
out["index_http"] = h.get_model_repository_index(headers=hauth)
g.unload_model(spare, headers=auth)
out["spare_ready_after_unload"] = g.is_model_ready(spare, headers=auth)
out["spare_index_after_unload"] = [m for m in h.get_model_repository_index(headers=hauth) if m["name"] == spare]
out["spare_infer_after_unload"] = failure(lambda: g.get_model_metadata(spare, headers=auth))
h.load_model(spare, headers=hauth)
out["spare_ready_after_http_load"] = g.is_model_ready(spare, headers=auth)
g.load_model(spare, headers=auth)  # a reload: a swap
out["spare_ready_after_grpc_load"] = h.is_model_ready(spare, headers=hauth)
out["load_missing_grpc"] = failure(lambda: g.load_model("not-in-the-folder", headers=auth))
out["load_missing_http"] = failure(lambda: h.load_model("not-in-the-folder", headers=hauth))
out["load_with_config"] = failure(lambda: g.load_model(spare, config="{}", headers=auth))

# Statistics, as both clients read them.
out["stats_grpc"] = g.get_inference_statistics(model, headers=auth, as_json=True)
out["stats_http"] = h.get_inference_statistics(model, headers=hauth)
out["stats_all_grpc"] = [s["name"] for s in g.get_inference_statistics(headers=auth, as_json=True)["model_stats"]]
print(json.dumps(out))
