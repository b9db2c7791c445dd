"""TF Serving's wire format: requests built as its client libraries build them
(gRPC PredictRequest protos, REST JSON in the row and columnar forms), decoded as
tensorflow_model_server decodes them, run on the export's signatures, and the
responses read back; and tools/serving_client.py against local servers that speak
both protocols. (tensorflow_model_server itself does not run on these machines.)"""

import base64
import http.server
import io
import json
import os
import threading
from concurrent import futures

import grpc
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from jsia_tf.evaluation import features as features_lib
from jsia_tf.serving import client
from jsia_tf.serving import saved_model

from conftest import run_python


class Server:
  """What tensorflow_model_server does with a predict request, on one SavedModel
  version: tensors from `tf.make_ndarray` (gRPC) or from JSON values with
  {"b64": ...} for strings (REST: one-input signatures take bare instances), the
  signature called, its outputs as TensorProtos or JSON (`predictions` per
  instance for the row form, `outputs` for the columnar form)."""

  def __init__(self, version_dir):
    self.loaded = tf.saved_model.load(version_dir)

  def _call(self, signature, inputs):
    fn = self.loaded.signatures[signature or "serving_default"]
    specs = fn.structured_input_signature[1]
    return {k: v.numpy() for k, v in fn(**{
        name: tf.constant(value, specs[name].dtype) for name, value in inputs.items()
    }).items()}, list(specs)

  def predict_grpc(self, wire: bytes) -> bytes:
    request = predict_pb2.PredictRequest.FromString(wire)
    outputs, _ = self._call(request.model_spec.signature_name,
                            {k: tf.make_ndarray(v) for k, v in request.inputs.items()})
    response = predict_pb2.PredictResponse()
    response.model_spec.CopyFrom(request.model_spec)
    for name, value in outputs.items():
      response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
    return response.SerializeToString()

  def predict_rest(self, body: str) -> str:
    request = json.loads(body)
    fn = self.loaded.signatures[request.get("signature_name", "serving_default")]
    names = list(fn.structured_input_signature[1])

    def value(v):
      if isinstance(v, dict) and set(v) == {"b64"}:
        return base64.b64decode(v["b64"])
      return [value(x) for x in v] if isinstance(v, list) else v

    if "instances" in request:
      rows = request["instances"]
      named = all(isinstance(r, dict) and set(r) != {"b64"} for r in rows)
      inputs = ({n: [value(r[n]) for r in rows] for n in names} if named else
                {names[0]: [value(r) for r in rows]})
      outputs, _ = self._call(request.get("signature_name"), inputs)
      if len(outputs) == 1:
        return json.dumps({"predictions": next(iter(outputs.values())).tolist()})
      return json.dumps({"predictions": [{k: v[i].tolist() for k, v in outputs.items()}
                                         for i in range(len(rows))]})
    columns = request["inputs"]
    inputs = ({n: value(columns[n]) for n in names} if isinstance(columns, dict)
              else {names[0]: value(columns)})
    outputs, _ = self._call(request.get("signature_name"), inputs)
    if len(outputs) == 1:
      return json.dumps({"outputs": next(iter(outputs.values())).tolist()})
    return json.dumps({"outputs": {k: v.tolist() for k, v in outputs.items()}})


@pytest.fixture(scope="module")
def version(tiny_run, tmp_path_factory):
  return saved_model.export_run(
      saved_model.config_lib.ExportConfig(
          workdir=tiny_run, export_dir=str(tmp_path_factory.mktemp("wire") / "m")),
      log=lambda _: None)


@pytest.fixture(scope="module")
def server(version):
  return Server(version)


def _png(seed, size=(70, 37)):
  image = np.random.default_rng(seed).integers(0, 256, size + (3,), np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="PNG")
  return buffer.getvalue()


def test_grpc_requests_give_the_saved_model_embeddings(version, server):
  served = saved_model.Served(version)
  encoded = [_png(1), _png(2)]
  request = client.grpc_request("jsia", client.IMAGE_BYTES, {
      client.IMAGE_BYTES_INPUT: np.asarray(encoded, object)}, version=1)
  assert request.model_spec.version.value == 1
  reply = predict_pb2.PredictResponse.FromString(server.predict_grpc(
      request.SerializeToString()))
  got = client.grpc_outputs(reply)
  assert list(got) == ["embedding"] and got["embedding"].dtype == np.float32
  np.testing.assert_allclose(got["embedding"], served.embed_bytes(encoded), atol=1e-6)
  images = np.random.default_rng(3).uniform(0, 255, (2, 50, 20, 3)).astype(np.float32)
  request = client.grpc_request("jsia", saved_model.SERVING_DEFAULT, {"images": images})
  reply = predict_pb2.PredictResponse.FromString(server.predict_grpc(
      request.SerializeToString()))
  np.testing.assert_allclose(client.grpc_outputs(reply)["embedding"],
                             served.embed_images(images), atol=1e-6)


@pytest.mark.parametrize("columnar", [False, True])
def test_rest_bodies_give_the_saved_model_embeddings(version, server, columnar):
  served = saved_model.Served(version)
  encoded = [_png(4), _png(5), _png(6)]
  body = client.rest_body(client.IMAGE_BYTES, client.IMAGE_BYTES_INPUT, encoded, columnar)
  sent = json.loads(body)
  if columnar:
    assert sent["inputs"]["image_bytes"][0] == {"b64": base64.b64encode(encoded[0]).decode()}
  else:
    assert sent["instances"][1] == {"b64": base64.b64encode(encoded[1]).decode()}
  reply = server.predict_rest(body)
  assert ("outputs" if columnar else "predictions") in json.loads(reply)
  np.testing.assert_allclose(client.rest_outputs(reply), served.embed_bytes(encoded),
                             atol=1e-6)
  # Raw pixels through serving_default (JSON numbers, one image per instance).
  images = np.random.default_rng(7).uniform(0, 255, (2, 40, 30, 3)).astype(np.float32)
  reply = server.predict_rest(client.rest_body(saved_model.SERVING_DEFAULT, "images",
                                               list(images), columnar))
  np.testing.assert_allclose(client.rest_outputs(reply), served.embed_images(images),
                             atol=1e-5)


def test_rest_error_replies_are_reported():
  with pytest.raises(client.errors.JsiaError, match="the server answered: Servable not"):
    client.rest_outputs(json.dumps({"error": "Servable not found for request"}))


def _rest_server(server):
  class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # pylint: disable=invalid-name
      if not self.path.endswith("/v1/models/jsia:predict"):
        self.send_response(404)
        self.end_headers()
        self.wfile.write(b'{"error": "Servable not found"}')
        return
      body = self.rfile.read(int(self.headers["Content-Length"])).decode()
      reply = server.predict_rest(body).encode()
      self.send_response(200)
      self.send_header("Content-Type", "application/json")
      self.end_headers()
      self.wfile.write(reply)

    def log_message(self, *args):
      pass

  httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
  threading.Thread(target=httpd.serve_forever, daemon=True).start()
  return httpd


def _grpc_server(server):
  class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def Predict(self, request, context):  # pylint: disable=invalid-name
      return predict_pb2.PredictResponse.FromString(
          server.predict_grpc(request.SerializeToString()))

  rpc = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
  prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Servicer(), rpc)
  port = rpc.add_insecure_port("127.0.0.1:0")
  rpc.start()
  return rpc, port


def test_serving_client_tool_over_rest_and_grpc(version, server, sysu_dir, tmp_path):
  served = saved_model.Served(version)
  folder = os.path.join(sysu_dir, "cam3", "0001")
  paths = sorted(os.path.join(folder, n) for n in os.listdir(folder))
  expected = served.embed_bytes([open(p, "rb").read() for p in paths])
  httpd = _rest_server(server)
  rpc, port = _grpc_server(server)
  try:
    for name, args in (
        ("rest", [f"--server=127.0.0.1:{httpd.server_port}"]),
        ("columnar", [f"--server=127.0.0.1:{httpd.server_port}", "--columnar"]),
        ("grpc", [f"--server=127.0.0.1:{port}", "--protocol=grpc"])):
      out = str(tmp_path / f"{name}.npz")
      result = run_python("tools/serving_client.py", *args, f"--images={folder}",
                          f"--output={out}", "--batch_size=2")
      assert result.returncode == 0, result.stderr
      assert f"{len(paths)} embeddings of dimension" in result.stdout
      feats = features_lib.load(out)
      assert list(feats.paths) == paths
      np.testing.assert_allclose(feats.features, expected, atol=1e-6)
    wrong = run_python("tools/serving_client.py", f"--server=127.0.0.1:{httpd.server_port}",
                       "--model_name=other", f"--images={folder}")
    assert wrong.returncode != 0 and "Traceback" not in wrong.stderr
    assert "answered HTTP 404" in wrong.stderr
  finally:
    # Closed, not only stopped: a socket still listening would take the request and
    # leave the client to wait out its --timeout.
    httpd.shutdown()
    httpd.server_close()
    rpc.stop(0)
  closed = run_python("tools/serving_client.py", f"--server=127.0.0.1:{httpd.server_port}",
                      f"--images={folder}")
  assert closed.returncode != 0 and "Traceback" not in closed.stderr
  assert "error: --server=127.0.0.1" in closed.stderr and "cannot reach" in closed.stderr
