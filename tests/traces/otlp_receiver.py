"""A small OTLP/HTTP trace receiver: accepts POST /v1/traces with an
ExportTraceServiceRequest (protobuf, gzip-compressed or not), and appends each
span to a file as one JSON line (ids as lowercase hex, attributes flattened).

Usage: python otlp_receiver.py OUT.jsonl [PORT]   (prints the port it listens on)
Also used as a module: Receiver(out_path).start() -> port.
"""

import gzip
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2


def any_value(v):
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind)


def spans_of(request):
    """The spans of an ExportTraceServiceRequest, as plain dicts."""
    for rs in request.resource_spans:
        resource = {kv.key: any_value(kv.value) for kv in rs.resource.attributes}
        for ss in rs.scope_spans:
            for s in ss.spans:
                yield {
                    "name": s.name,
                    "trace_id": s.trace_id.hex(),
                    "span_id": s.span_id.hex(),
                    "parent_span_id": s.parent_span_id.hex(),
                    "kind": s.kind,
                    "start_ns": s.start_time_unix_nano,
                    "end_ns": s.end_time_unix_nano,
                    "status_code": s.status.code,
                    "status_message": s.status.message,
                    "attributes": {kv.key: any_value(kv.value) for kv in s.attributes},
                    "links": [
                        {"trace_id": l.trace_id.hex(), "span_id": l.span_id.hex()}
                        for l in s.links
                    ],
                    "resource": resource,
                    "scope": ss.scope.name,
                }


class Receiver:
    def __init__(self, out_path, port=0):
        self.out_path = out_path
        self.lock = threading.Lock()
        self.requests = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if self.headers.get("content-encoding", "").lower() == "gzip":
                    body = gzip.decompress(body)
                if self.headers.get("content-type", "") != "application/x-protobuf":
                    self.send_response(415)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                req = trace_service_pb2.ExportTraceServiceRequest()
                req.ParseFromString(body)
                with receiver.lock:
                    receiver.requests += 1
                    with open(receiver.out_path, "a") as f:
                        for span in spans_of(req):
                            f.write(json.dumps(span) + "\n")
                answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)

    def start(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self.server.server_address[1]

    def spans(self):
        with self.lock:
            try:
                with open(self.out_path) as f:
                    return [json.loads(line) for line in f if line.strip()]
            except FileNotFoundError:
                return []

    def stop(self):
        self.server.shutdown()


if __name__ == "__main__":
    r = Receiver(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0)
    print(r.start(), flush=True)
    threading.Event().wait()
