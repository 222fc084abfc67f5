"""Run in a fresh process by test_azure_monitor.py (the distro sets OpenTelemetry's global
providers, which a process can set only once): configure telemetry from the settings with an
Application Insights connection string whose ingestion endpoint is a loopback server, emit a wake
span, a turn and a log line, and print what the "ingestion endpoint" received as JSON."""

from __future__ import annotations

import gzip
import json
import logging
import os
import sys
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

received: list[dict[str, Any]] = []


class Ingestion(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if self.path.startswith("/v2.1/track"):
            received.extend(json.loads(body))
        answer = json.dumps({"itemsReceived": 1, "itemsAccepted": 1, "errors": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        pass


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Ingestion)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}/"
    from kernel import telemetry
    from kernel.telemetry.config import from_settings
    from kernel.telemetry.setup import build
    from kernel.telemetry.spans import WAKE, span
    from kernel.telemetry.turns import record_turn

    quiet = build(from_settings({"AOS_TELEMETRY_CONSOLE": "off"}))
    quiet.shutdown()
    imported_without = "azure.monitor.opentelemetry" in sys.modules

    os.environ["APPLICATIONINSIGHTS_CONNECTION_STRING"] = (
        f"InstrumentationKey=00000000-0000-0000-0000-00000000a05f;IngestionEndpoint={endpoint};LiveEndpoint={endpoint}")
    configured = telemetry.ensure_configured()  # as an app does on its first span
    imported_with = "azure.monitor.opentelemetry" in sys.modules
    started = datetime.now(UTC) - timedelta(seconds=1)
    with span(WAKE, parent=f"00-{sys.argv[1]}-{sys.argv[2]}-01", attributes={"aos.event.id": "e-7"}):
        logging.getLogger("aos.realm.wake").warning("waking keeper for e-7")
        logging.getLogger("aos.realm.wake").warning("endpoint answered 401 for api_key=%s", "sk-probe-secret")
        traceparent = telemetry.current_traceparent()
    record_turn({"turn_id": "turn-keeper-7", "agent_id": "keeper", "outcome": "replied", "started": started.isoformat(),
                 "event": {"id": "e-7", "type": "ledger.entry", "traceparent": traceparent},
                 "usage": {"prompt_tokens": 10, "completion_tokens": 5}, "steps": []})
    telemetry.release(configured)
    server.shutdown()
    print(json.dumps({"imported_without": imported_without, "imported_with": imported_with,
                      "description": configured.describe(), "wake_traceparent": traceparent, "items": received}))


if __name__ == "__main__":
    main()
