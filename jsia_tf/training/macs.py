"""Multiply-accumulates of a traced TensorFlow graph, from its ops' static shapes.

The count is read from the graph TensorFlow will run (its live ops: those the
outputs and variable updates depend on; before Grappler's rewrites, which fuse but
do not remove arithmetic), so it covers every pass the step really makes: forward
passes, the tape's backward passes, recomputations. Only the
dense-algebra ops are counted (convolutions, their two backward ops, matrix
products); normalisations, activations and elementwise ops are a few per element
and are left out, as MAC counts of networks usually do.

Each op is attributed to a network by its name scope (Keras puts the layer path in
the op name; the tape's backward ops carry `gradient_tape/` in front) and to
"forward" or "backward".
"""

import collections
import dataclasses
import re
from typing import Callable, Dict, Iterable, List, Tuple

import numpy as np
import tensorflow as tf

from jsia_tf import errors

_BACKWARD_PREFIX = re.compile(r"^(.*/)?gradient_tape/")


@dataclasses.dataclass(frozen=True)
class OpMacs:
  """One counted op: its name, type, pass ("forward"/"backward") and MACs."""

  name: str
  type: str
  direction: str
  macs: int
  input_shape: Tuple[int, ...]  # of its first input: [N, H, W, C] for a conv
  dtype: str  # of its output: "float32", "bfloat16", ...


def _shape(tensor: tf.Tensor, op: tf.Operation) -> Tuple[int, ...]:
  shape = tensor.shape
  if shape.rank is None or any(d is None for d in shape):
    raise errors.ConfigError(
        f"cannot count the MACs of {op.type} op {op.name!r}: the shape of "
        f"{tensor.name} is {shape}, not fully known; trace with static batch shapes")
  return tuple(int(d) for d in shape)


def _output_and_kernel(op: tf.Operation):
  """The shapes of a convolution's output and kernel, for the forward op and for
  its two backward ops (input gradient: the output's gradient is input 2; kernel
  gradient: the kernel is the op's output)."""
  if op.type.endswith("BackpropInput"):
    return _shape(op.inputs[2], op), _shape(op.inputs[1], op)
  if op.type.endswith("BackpropFilter"):
    return _shape(op.inputs[2], op), _shape(op.outputs[0], op)
  return _shape(op.outputs[0], op), _shape(op.inputs[1], op)


def _conv_macs(op: tf.Operation) -> int:
  """N*Ho*Wo*Co*kh*kw*Ci (Ci: the kernel's input channels) for Conv2D and for
  both of its backward ops (each multiplies the same pairs of numbers once more)."""
  if op.get_attr("data_format") not in (b"NHWC", "NHWC"):
    raise errors.ConfigError(f"{op.name}: only NHWC convolutions are counted")
  (n, ho, wo, co), (kh, kw, ci, _) = _output_and_kernel(op)
  return n * ho * wo * co * kh * kw * ci


def _depthwise_macs(op: tf.Operation) -> int:
  """N*Ho*Wo*C*multiplier*kh*kw (forward and both backward ops)."""
  (n, ho, wo, _), (kh, kw, c, mult) = _output_and_kernel(op)
  return n * ho * wo * c * mult * kh * kw


def _matmul_macs(op: tf.Operation) -> int:
  """m*k*n for MatMul, times the batch for BatchMatMul (broadcast batch dims)."""
  a, b = _shape(op.inputs[0], op), _shape(op.inputs[1], op)
  out = _shape(op.outputs[0], op)
  if op.type == "MatMul":
    k = a[0] if op.get_attr("transpose_a") else a[1]
  else:
    k = a[-2] if op.get_attr("adj_x") else a[-1]
  return int(np.prod(out)) * k


def _einsum_macs(op: tf.Operation) -> int:
  """Two operands: the product of the sizes of every index letter (each output
  element sums over the contracted ones). One operand (a transpose, a sum): 0."""
  equation = op.get_attr("equation")
  equation = equation.decode() if isinstance(equation, bytes) else equation
  inputs = equation.split("->")[0].split(",")
  if len(inputs) == 1:
    return 0
  if "." in equation or len(inputs) != 2:
    raise errors.ConfigError(f"{op.name}: einsum {equation!r} is not counted")
  sizes = {}
  for letters, tensor in zip(inputs, op.inputs):
    for letter, size in zip(letters, _shape(tensor, op)):
      sizes[letter] = size
  return int(np.prod(list(sizes.values())))


_COUNTERS: Dict[str, Callable[[tf.Operation], int]] = {
    "Conv2D": _conv_macs, "Conv2DBackpropInput": _conv_macs,
    "Conv2DBackpropFilter": _conv_macs,
    "DepthwiseConv2dNative": _depthwise_macs,
    "DepthwiseConv2dNativeBackpropInput": _depthwise_macs,
    "DepthwiseConv2dNativeBackpropFilter": _depthwise_macs,
    "MatMul": _matmul_macs, "BatchMatMul": _matmul_macs, "BatchMatMulV2": _matmul_macs,
    "BatchMatMulV3": _matmul_macs, "Einsum": _einsum_macs,
}
# Ops that would hide MACs from the count: refuse rather than undercount.
_UNCOUNTED = ("Conv3D", "Conv2DBackpropInputV2", "FusedConv2DBiasActivation")


def _live(graph: tf.Graph) -> List[tf.Operation]:
  """The ops of `graph` that its outputs or control outputs (a tf.function's
  variable updates) depend on, in graph order: TensorFlow prunes the rest before
  running it (e.g. the gradient of a first layer's input, which the tape builds
  but nothing reads). All ops of a graph without declared outputs."""
  targets = [t.op for t in getattr(graph, "outputs", [])] + list(
      getattr(graph, "control_outputs", []))
  if not targets:
    return graph.get_operations()
  seen, stack = set(), list(targets)
  while stack:
    op = stack.pop()
    if op in seen:
      continue
    seen.add(op)
    stack.extend(t.op for t in op.inputs)
    stack.extend(op.control_inputs)
  return [op for op in graph.get_operations() if op in seen]


def _ops(graph: tf.Graph) -> Iterable[tf.Operation]:
  """The live ops of `graph` and of the functions it calls (tf.function nests
  them, e.g. under a tf.cond)."""
  seen = set()
  stack = [graph]
  while stack:
    g = stack.pop()
    yield from _live(g)
    for name, function in getattr(g, "_functions", {}).items():
      if name not in seen and hasattr(function, "graph"):
        seen.add(name)
        stack.append(function.graph)


def count(graph: tf.Graph) -> list:
  """[OpMacs] of every counted op of `graph` (and of the functions it calls)."""
  counted = []
  for op in _ops(graph):
    if op.type in _UNCOUNTED:
      raise errors.ConfigError(f"{op.name}: MACs of {op.type} ops are not counted")
    counter = _COUNTERS.get(op.type)
    if counter is None:
      continue
    direction = "backward" if _BACKWARD_PREFIX.search(op.name) else "forward"
    first = op.inputs[0].shape
    counted.append(OpMacs(op.name, op.type, direction, counter(op),
                          tuple(first.as_list()) if first.rank is not None else (),
                          op.outputs[0].dtype.name))
  return counted


def by_dtype(counted: Iterable[OpMacs]) -> Dict[str, int]:
  """{dtype: MACs}: how much of the arithmetic runs in each precision (under a
  mixed policy, what stays float32)."""
  table = collections.Counter()
  for op in counted:
    table[op.dtype] += op.macs
  return dict(table)


def call_scope(op_name: str) -> str:
  """The top-level name scope of an op, the tape's prefix removed: one call of a
  network ("E_sl_3": the fourth call of E_sl in the traced function)."""
  return _BACKWARD_PREFIX.sub("", op_name).split("/")[0]


def network_name(scope: str) -> str:
  """"E_sl_3" -> "E_sl": the network of a call scope (Keras numbers repeated calls)."""
  return re.sub(r"_\d+$", "", scope)


def passes(counted: Iterable[OpMacs]) -> List[Dict]:
  """One row per network call, in the order of the forward pass: its scope, the
  network, the images and resolution its first convolution sees (None for matrix
  products only), and the forward and backward MACs (the backward ops of a call
  carry its scope)."""
  rows: Dict[str, Dict] = {}
  for op in counted:
    scope = call_scope(op.name)
    row = rows.setdefault(scope, {"scope": scope, "network": network_name(scope),
                                  "images": None, "resolution": None,
                                  "forward_macs": 0, "backward_macs": 0})
    if op.direction == "forward" and row["resolution"] is None and len(op.input_shape) == 4:
      row["images"] = op.input_shape[0]  # of its first convolution
      row["resolution"] = f"{op.input_shape[1]}x{op.input_shape[2]}"
    row[f"{op.direction}_macs"] += op.macs
  return list(rows.values())


def by_network(counted: Iterable[OpMacs]) -> Dict[str, Dict[str, int]]:
  """{network: {"calls", "forward_macs", "backward_macs"}} over every call."""
  table = collections.OrderedDict()
  for row in passes(counted):
    t = table.setdefault(row["network"], {"calls": 0, "forward_macs": 0,
                                          "backward_macs": 0})
    t["calls"] += 1
    t["forward_macs"] += row["forward_macs"]
    t["backward_macs"] += row["backward_macs"]
  return dict(table)
