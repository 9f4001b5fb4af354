"""Serves moto's AWS API emulator on one host and port for the adapter tests.

Usage (inside the trixie tree made by setup-moto.sh): python3 moto-server.py HOST PORT

Differs from the packaged `moto_server` command in two ways, both on purpose:

* Requests are handled one at a time. moto's server is threaded and its conditional writes are
  check-then-act without a lock: S3 `If-None-Match: *` looks the key up, then stores; DynamoDB's
  TransactWriteItems deep-copies every table, applies the items, and on a failed condition puts
  the copy back, undoing whatever other requests wrote meanwhile. Real S3 and DynamoDB make each
  of those calls atomic, so serialising the requests is what makes the emulator faithful for
  tests that race writers against each other. Connections are still served by many threads.
* It exits as soon as its standard input closes, so a test process that dies without calling
  stop() never leaves a server behind.
* With IAM checks on (the sandbox turns them on through /moto-api/reset-auth), moto recomputes
  each request's SigV4 signature from the URL it received, but hands botocore the query string
  still percent-encoded, so botocore encodes it a second time and every request with an encoded
  query value (ListObjectsV2 with a prefix "a/b/") fails with SignatureDoesNotMatch. The query is
  decoded here into parameters, which botocore encodes once, as the client did.
"""

import logging
import os
import sys
import threading
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple


def sign_decoded_query() -> None:
    from moto.iam import access_control

    original = access_control.IAMRequestBase._create_aws_request

    def create_aws_request(self):  # type: ignore[no-untyped-def]
        aws_request = original(self)
        parts = urlsplit(aws_request.url)
        if parts.query:
            aws_request.params = parse_qsl(parts.query, keep_blank_values=True)
            aws_request.url = urlunsplit(parts._replace(query=""))
        return aws_request

    access_control.IAMRequestBase._create_aws_request = create_aws_request


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: moto-server.py HOST PORT")
    host, port = sys.argv[1], int(sys.argv[2])
    # moto builds some URLs (SQS queue URLs) from this port.
    os.environ.setdefault("MOTO_PORT", str(port))
    serial = os.environ.get("NEUROCAAS_MOTO_CONCURRENT") != "1"
    # One line per request would only fill the parent's pipe.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    sign_decoded_query()
    backend_app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def serial_app(environ, start_response):
        with lock:
            body = backend_app(environ, start_response)
            try:
                # The whole response is produced under the lock.
                return [b"".join(body)]
            finally:
                close = getattr(body, "close", None)
                if close is not None:
                    close()

    def exit_when_parent_is_gone() -> None:
        sys.stdin.buffer.read()
        os._exit(0)

    threading.Thread(target=exit_when_parent_is_gone, daemon=True).start()
    print(f"moto-server: listening on http://{host}:{port} ({'serial' if serial else 'concurrent'})", file=sys.stderr, flush=True)
    run_simple(host, port, serial_app if serial else backend_app, threaded=True, use_reloader=False)


if __name__ == "__main__":
    main()
