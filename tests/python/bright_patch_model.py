"""Writes a synthetic model whose answer is decided by one patch of the image, for the tests of
`POST /v1/models/{name}/explain`: class CLASS's logit is the sum of the normalised pixel values
inside the PATCH x PATCH square at (ROW, COL) (top-left pixel, y then x), every other logit is 0.
A bright square there on a dark picture makes CLASS certain; hiding it makes CLASS impossible.

The graph is one 32x32 convolution; the file keeps SRC's interface and metadata (names, classes,
normalisation), which is all `serve` reads.

    python bright_patch_model.py SRC DST CLASS ROW COL PATCH
"""
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper


def main(src, dst, cls, row, col, patch):
    model = onnx.load(src)
    graph = model.graph
    inp, out = graph.input[0], graph.output[0]
    classes = out.type.tensor_type.shape.dim[1].dim_value or 10
    weight = np.zeros((classes, 3, 32, 32), np.float32)
    weight[cls, :, row:row + patch, col:col + patch] = 1.0
    nodes = [
        helper.make_node("Conv", [inp.name, "w", "b"], ["scores"], kernel_shape=[32, 32]),
        helper.make_node("Flatten", ["scores"], [out.name], axis=1),
    ]
    inits = [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(np.zeros(classes, np.float32), "b")]
    new_graph = helper.make_graph(nodes, "bright_patch", [inp], [out], inits)
    model.graph.CopyFrom(new_graph)
    onnx.checker.check_model(model)
    onnx.save(model, dst)


if __name__ == "__main__":
    src, dst, *numbers = sys.argv[1:]
    main(src, dst, *map(int, numbers))
