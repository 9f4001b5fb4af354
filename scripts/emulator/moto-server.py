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
* moto checks the Resource of a policy statement only for S3 and STS; every other service's
  request is checked against the resource "*", so a statement scoped to an ARN (the researchers'
  `parameter/neurocaas/*`, their own `user/neurocaas/${aws:username}`) never allows anything.
  The resource is named here for the SSM parameter reads and for IAM actions on one user, as
  AWS names them, so those statements are enforced instead of always denying.
"""

import json
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


def name_resources() -> None:
    from moto.iam.responses import IamResponse
    from moto.ssm.responses import SimpleSystemManagerResponse

    def ssm_resource(self):  # type: ignore[no-untyped-def]
        try:
            body = json.loads(self.body or "{}")
        except (TypeError, ValueError):
            return "*"
        action = self._get_action()
        if action == "GetParameter":
            name = body.get("Name")
        elif action == "GetParametersByPath":
            name = body.get("Path")
        elif action == "GetParameters":
            name = (body.get("Names") or [None])[0]
        else:
            return "*"
        if not isinstance(name, str) or not name:
            return "*"
        if not name.startswith("/"):
            name = "/" + name
        # GetParametersByPath is authorised on the path itself, without a trailing slash.
        if action == "GetParametersByPath" and len(name) > 1:
            name = name.rstrip("/")
        return f"arn:aws:ssm:{self.region}:{self.current_account}:parameter{name}"

    def iam_resource(self):  # type: ignore[no-untyped-def]
        user = (self.querystring.get("UserName") or [None])[0]
        if not user:
            return "*"
        try:
            from moto.iam.models import iam_backends

            return iam_backends[self.current_account][self.partition].get_user(user).arn
        except Exception:  # an unknown user: the path is not known, AWS would say NoSuchEntity
            return f"arn:aws:iam::{self.current_account}:user/{user}"

    SimpleSystemManagerResponse._determine_resource = ssm_resource
    IamResponse._determine_resource = iam_resource


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
    name_resources()
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
