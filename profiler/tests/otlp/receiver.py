"""An OTLP/HTTP metrics receiver for the serve root test, decoding with the OTel project's own
Python protobuf classes (opentelemetry-proto).

    python3 receiver.py OUT [STATUS]

listens on a free loopback port and prints it on the first line of standard output; each
POST /v1/metrics is decoded as an ExportMetricsServiceRequest and appended to OUT as one line
of JSON (google.protobuf.json_format, the OTLP/JSON mapping), then answered with STATUS
(200 by default) and an empty ExportMetricsServiceResponse. A body that does not decode is
answered 400 and recorded as {"error": ...}.
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

OUT = sys.argv[1]
STATUS = int(sys.argv[2]) if len(sys.argv) > 2 else 200


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        status = STATUS
        if self.path != "/v1/metrics":
            record, status = {"error": f"path {self.path}"}, 404
        elif self.headers.get("Content-Type") != "application/x-protobuf":
            record, status = {"error": f"type {self.headers.get('Content-Type')}"}, 415
        else:
            try:
                req = ExportMetricsServiceRequest()
                req.ParseFromString(body)
                record = json_format.MessageToDict(req)
            except Exception as e:  # noqa: BLE001: any decoding failure is the test's finding
                record, status = {"error": f"decode: {e}"}, 400
        with open(OUT, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        answer = ExportMetricsServiceResponse().SerializeToString()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


server = HTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
