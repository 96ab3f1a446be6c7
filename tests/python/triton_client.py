"""Drives `serve` with the official KServe V2 / Triton HTTP client, in JSON and in binary.

usage: triton_client.py HOST:PORT MODEL INPUT.f32 N
INPUT.f32 holds N x 3 x 32 x 32 little-endian float32 values. Prints one JSON object:
{"live", "ready", "model_ready", "metadata", "json": [logits...], "binary": [logits...]}.
"""
import json
import sys

import numpy as np
import tritonclient.http as httpclient

url, model, path, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
x = np.fromfile(path, dtype="<f4").reshape(n, 3, 32, 32)
client = httpclient.InferenceServerClient(url=url, connection_timeout=30, network_timeout=60)

out = {
    "live": client.is_server_live(),
    "ready": client.is_server_ready(),
    "model_ready": client.is_model_ready(model),
    "metadata": client.get_model_metadata(model),
    "server": client.get_server_metadata(),
}

for mode, binary in (("json", False), ("binary", True)):
    inp = httpclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    req_out = httpclient.InferRequestedOutput("logits", binary_data=binary)
    result = client.infer(model, [inp], outputs=[req_out], request_id=mode)
    logits = result.as_numpy("logits")
    assert logits.shape == (n, 10), logits.shape
    assert result.get_response()["id"] == mode
    out[mode] = logits.astype(np.float64).ravel().tolist()

# Without requested outputs the client asks for binary outputs (binary_data_output).
inp = httpclient.InferInput("input", list(x.shape), "FP32")
inp.set_data_from_numpy(x)
out["default"] = client.infer(model, [inp], model_version="1").as_numpy("logits").astype(np.float64).ravel().tolist()

# A server-side error reaches the client as an exception with the server's message.
try:
    bad = httpclient.InferInput("input", [1, 3, 32, 31], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 3, 32, 31), dtype=np.float32))
    client.infer(model, [bad])
    out["error"] = None
except Exception as e:  # tritonclient raises InferenceServerException
    out["error"] = str(e)

print(json.dumps(out))
