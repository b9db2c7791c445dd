"""TF Serving requests for an export, built as its client libraries build them: gRPC
`PredictRequest` protos (tensorflow-serving-api, `tf.make_tensor_proto`) and the
REST API's JSON bodies (the row form `{"instances": [...]}` and the columnar form
`{"inputs": {...}}`; encoded images as `{"b64": ...}`), and their responses read
back (`tf.make_ndarray`; `predictions` / `outputs`).

`Remote` embeds images through a running server with either protocol and has the
`embed_bytes` of `saved_model.Served`, so `search.embed_files` writes its features
file (tools/serving_client.py).
"""

import base64
import json
import urllib.error
import urllib.request
from typing import Dict, List, Sequence

import numpy as np
import tensorflow as tf

from jsia_tf import errors

OUTPUT = "embedding"
# The SavedModel's signature for encoded images and its input (saved_model.IMAGE_BYTES).
IMAGE_BYTES, IMAGE_BYTES_INPUT = "serve_image_bytes", "image_bytes"


def _serving_apis():
  try:
    # pylint: disable-next=import-outside-toplevel
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
  except ImportError as e:
    raise errors.ConfigError(f"gRPC requests need tensorflow-serving-api ({e}): "
                             "pip install -e .[deploy]") from None
  return predict_pb2, prediction_service_pb2_grpc


def grpc_request(model_name: str, signature: str, inputs: Dict[str, np.ndarray],
                 version: int = 0):
  """The PredictRequest of `inputs` ({input name: array, bytes as an object
  array}) for `signature` of model `model_name` (`version` 0: the newest)."""
  predict_pb2, _ = _serving_apis()
  request = predict_pb2.PredictRequest()
  request.model_spec.name = model_name
  request.model_spec.signature_name = signature
  if version:
    request.model_spec.version.value = version
  for name, value in inputs.items():
    request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
  return request


def grpc_outputs(response) -> Dict[str, np.ndarray]:
  """{output name: array} of a PredictResponse."""
  return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


def _json_value(value):
  if isinstance(value, bytes):
    return {"b64": base64.b64encode(value).decode("ascii")}
  return np.asarray(value).tolist()


def rest_body(signature: str, name: str, values: Sequence, columnar: bool = False) -> str:
  """The JSON body of a REST predict call: one input `name` with one value per
  instance (bytes are sent as {"b64": ...}), in the row or the columnar form."""
  encoded = [_json_value(v) for v in values]
  # The row form names no input: TF Serving gives a one-input signature's
  # instances to that input, as in its documentation's {"instances": [{"b64": ..}]}.
  body = {"inputs": {name: encoded}} if columnar else {"instances": encoded}
  return json.dumps({"signature_name": signature, **body})


def rest_outputs(body: str, output: str = OUTPUT) -> np.ndarray:
  """The `output` of a REST predict response: the row form's `predictions` (one
  entry per instance, a value or {name: value}) or the columnar form's `outputs`
  (a value or {name: value})."""
  reply = json.loads(body)
  if "error" in reply:
    raise errors.JsiaError(f"the server answered: {reply['error']}")
  if "predictions" in reply:
    rows = reply["predictions"]
    return np.asarray([r[output] if isinstance(r, dict) else r for r in rows], np.float32)
  if "outputs" in reply:
    out = reply["outputs"]
    return np.asarray(out[output] if isinstance(out, dict) else out, np.float32)
  raise errors.JsiaError(f"the server's reply has neither predictions nor outputs: "
                         f"{body[:200]}")


def rest_url(server: str, model_name: str, version: int = 0) -> str:
  """The REST predict URL of model `model_name` at `server` (HOST:PORT)."""
  versioned = f"/versions/{version}" if version else ""
  return f"http://{server}/v1/models/{model_name}{versioned}:predict"


class Remote:
  """A model behind TF Serving at `server` (HOST:PORT; REST or gRPC), embedding
  encoded images through its serve_image_bytes signature."""

  def __init__(self, server: str, model_name: str, protocol: str = "rest",
               version: int = 0, columnar: bool = False, timeout: float = 60.0):
    self.server, self.model_name, self.protocol = server, model_name, protocol
    self.version, self.columnar, self.timeout = version, columnar, timeout
    self.directory = (rest_url(server, model_name, version) if protocol == "rest"
                      else f"grpc://{server}/{model_name}")
    if protocol == "grpc":
      # pylint: disable-next=import-outside-toplevel
      import grpc
      _, service = _serving_apis()
      self._stub = service.PredictionServiceStub(grpc.insecure_channel(server))

  def embed_bytes(self, image_bytes: List[bytes]) -> np.ndarray:
    """Encoded images -> embeddings [B, D] from the server."""
    try:
      if self.protocol == "grpc":
        request = grpc_request(self.model_name, IMAGE_BYTES,
                               {IMAGE_BYTES_INPUT: np.asarray(image_bytes, object)},
                               self.version)
        return grpc_outputs(self._stub.Predict(request, timeout=self.timeout))[OUTPUT]
      body = rest_body(IMAGE_BYTES, IMAGE_BYTES_INPUT, image_bytes, self.columnar)
      post = urllib.request.Request(self.directory, body.encode(),
                                    {"Content-Type": "application/json"})
      with urllib.request.urlopen(post, timeout=self.timeout) as reply:
        return rest_outputs(reply.read().decode())
    except urllib.error.HTTPError as e:
      raise errors.JsiaError(f"--server={self.server}: {self.directory} answered HTTP "
                             f"{e.code}: {e.read().decode(errors='replace')[:300]}") from None
    except (urllib.error.URLError, OSError) as e:
      raise errors.JsiaError(f"--server={self.server}: cannot reach {self.directory} "
                             f"({getattr(e, 'reason', e)}); is tensorflow_model_server "
                             f"running with --rest_api_port?") from None
    except Exception as e:  # pylint: disable=broad-except
      if type(e).__name__.endswith("RpcError"):
        raise errors.JsiaError(f"--server={self.server}: the gRPC call failed "
                               f"({e.code().name}: {e.details()})") from None
      raise
