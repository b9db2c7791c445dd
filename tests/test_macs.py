"""MAC counting on traced graphs, checked against hand-computed counts."""

import keras
import pytest
import tensorflow as tf

from jsia_tf import errors
from jsia_tf.training import macs


def _net(name):
  """conv 3x3 (3->4) on 8x6, stride 1 'same'; conv 1x1 (4->5); global mean; dense 5->2."""
  return keras.Sequential([
      keras.Input((8, 6, 3)),
      keras.layers.Conv2D(4, 3, padding="same", use_bias=False, name="c1"),
      keras.layers.Conv2D(5, 1, use_bias=False, name="c2"),
      keras.layers.GlobalAveragePooling2D(),
      keras.layers.Dense(2, use_bias=False, name="fc"),
  ], name=name)


# Per image: c1 8*6*4 outputs x 3*3*3 = 5184; c2 8*6*5 x 4 = 960; fc 2 x 5 = 10.
_C1, _C2, _FC = 5184, 960, 10


def test_forward_and_backward_macs_of_a_training_step():
  """Forward: N x the per-image count. Backward: each layer's two backward ops (the
  input's and the kernel's gradient, each as many MACs as its forward op), except
  the first conv's input gradient: the tape builds it, but nothing reads it, so
  TensorFlow prunes it and it is not counted."""
  net = _net("net")

  @tf.function
  def step(x):
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(net(x))
    return loss, tape.gradient(loss, net.trainable_variables)

  x = tf.zeros((7, 8, 6, 3))
  counted = macs.count(step.get_concrete_function(x).graph)
  forward = sum(op.macs for op in counted if op.direction == "forward")
  backward = sum(op.macs for op in counted if op.direction == "backward")
  assert forward == 7 * (_C1 + _C2 + _FC)
  assert backward == 7 * (_C1 + 2 * _C2 + 2 * _FC)
  assert {op.type for op in counted} == {"Conv2D", "MatMul", "Conv2DBackpropFilter",
                                         "Conv2DBackpropInput"}
  assert macs.by_dtype(counted) == {"float32": forward + backward}


def test_passes_are_the_calls_of_each_network_with_their_images():
  """Two calls of one network (4 and 2 images) and one of another: three rows with
  their own counts; by_network adds the calls up."""
  a, b = _net("A"), _net("B")

  @tf.function
  def forward(x, y):
    return a(x), a(y), b(x)

  counted = macs.count(forward.get_concrete_function(
      tf.zeros((4, 8, 6, 3)), tf.zeros((2, 8, 6, 3))).graph)
  rows = macs.passes(counted)
  assert [(r["network"], r["images"], r["resolution"]) for r in rows] == [
      ("A", 4, "8x6"), ("A", 2, "8x6"), ("B", 4, "8x6")]
  assert [r["forward_macs"] for r in rows] == [n * (_C1 + _C2 + _FC) for n in (4, 2, 4)]
  assert macs.by_network(counted) == {
      "A": {"calls": 2, "forward_macs": 6 * (_C1 + _C2 + _FC), "backward_macs": 0},
      "B": {"calls": 1, "forward_macs": 4 * (_C1 + _C2 + _FC), "backward_macs": 0}}


def test_only_ops_the_outputs_need_are_counted():
  """A function that returns only the gradients does not run the last layer's
  forward op (its output is not needed for them): pruned, not counted."""
  net = _net("net")

  @tf.function
  def grads(x):
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(net(x))
    return tape.gradient(loss, net.trainable_variables)

  counted = macs.count(grads.get_concrete_function(tf.zeros((7, 8, 6, 3))).graph)
  assert sum(op.macs for op in counted if op.direction == "forward") == 7 * (_C1 + _C2)


def test_einsum_matmul_variants_and_unknown_shapes():
  @tf.function
  def products(a, b, m):
    return (tf.einsum("nhw,wv->nhv", a, b),  # 3*5*4*6 index sizes
            tf.matmul(m, m, transpose_a=True),  # [4,3]^T x [4,3]: 3*3*4
            tf.linalg.matmul(tf.zeros((2, 5, 7)), tf.zeros((2, 7, 3))),  # 2*5*3*7
            tf.einsum("nhw->nwh", a))  # one operand: no MACs
  graph = products.get_concrete_function(tf.zeros((3, 5, 4)), tf.zeros((4, 6)),
                                         tf.zeros((4, 3))).graph
  assert sorted(op.macs for op in macs.count(graph)) == sorted(
      [3 * 5 * 4 * 6, 3 * 3 * 4, 2 * 5 * 3 * 7, 0])

  @tf.function
  def dynamic(x):
    return tf.matmul(x, tf.ones((4, 2)))
  with pytest.raises(errors.ConfigError, match="not fully known; trace with static"):
    macs.count(dynamic.get_concrete_function(tf.TensorSpec((None, 4))).graph)


def test_call_scope_and_network_name():
  assert macs.call_scope("gradient_tape/E_sl_3/stem/convolution/Conv2DBackpropInput") == \
      "E_sl_3"
  assert macs.call_scope("D_rgb_1/mlp/MatMul") == "D_rgb_1"
  assert macs.network_name("E_sl_3") == "E_sl" and macs.network_name("E_s_ir") == "E_s_ir"
  assert macs.network_name("Dis_rgb_12") == "Dis_rgb"
