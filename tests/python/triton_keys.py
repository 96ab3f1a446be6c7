"""Drives `serve --api-key-file` with the official KServe V2 / Triton HTTP client.

usage: triton_keys.py HOST:PORT MODEL KEY
Prints one JSON object: {"live_without_key", "without_key" (the client's error, or null),
"logits_shape", "stats" (get_inference_statistics of MODEL after one 3-image request)}.
"""
import json
import sys

import numpy as np
import tritonclient.http as httpclient

url, model, key = sys.argv[1], sys.argv[2], sys.argv[3]
client = httpclient.InferenceServerClient(url=url, connection_timeout=30, network_timeout=60)
out = {"live_without_key": client.is_server_live()}

try:
    client.get_model_metadata(model)
    out["without_key"] = None
except Exception as e:  # tritonclient raises InferenceServerException
    out["without_key"] = str(e)

headers = {"Authorization": "Bearer " + key}
x = np.full((3, 3, 32, 32), 0.25, dtype=np.float32)
inp = httpclient.InferInput("input", list(x.shape), "FP32")
inp.set_data_from_numpy(x, binary_data=True)
result = client.infer(model, [inp], headers=headers)
out["logits_shape"] = list(result.as_numpy("logits").shape)
out["stats"] = client.get_inference_statistics(model, headers=headers)
print(json.dumps(out))
