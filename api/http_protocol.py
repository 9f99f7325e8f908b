"""uvicorn's httptools protocol with its own 400 as a problem, like every other error of the API.

A request the HTTP parser refuses — an unknown method (``FOO``), ``Content-Length: abc``, a
control character in the path, a malformed request line — never reaches Starlette: uvicorn
answers it itself with ``400 text/plain "Invalid HTTP request received."`` and closes the
connection. ``ProblemHttpToolsProtocol`` keeps uvicorn's behaviour (400, then close) and only
changes the body to ``application/problem+json`` (``malformed-request``) with the parser's reason.
It is passed as ``uvicorn.Config(http=...)``, a documented extension point; the override is one
method, and ``tests/system/test_api_inputs.py`` pins the result so an upgrade that changes it
fails loudly.

What still is not a problem document (decision 0021): a connection closed before a whole request
arrived (nothing can be answered), and uvicorn's own 503 when ``limit_concurrency`` is set (it
is not).
"""

from __future__ import annotations

import sys
from typing import Final

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from api.problems import MALFORMED_REQUEST, PROBLEM_CONTENT_TYPE, ApiProblemError

REASON_LENGTH_MAX: Final = 120


def malformed_request_body(reason: str) -> bytes:
    detail = f"the HTTP parser refused the request: {reason[:REASON_LENGTH_MAX]}"
    return ApiProblemError(MALFORMED_REQUEST, detail).body()


class ProblemHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` whose parser-error response is a problem document."""

    def send_400_response(self, msg: str) -> None:
        # Called from uvicorn's ``except httptools.HttpParserError`` block: the parser's own
        # reason ("Invalid method encountered") is the exception being handled.
        error = sys.exc_info()[1]
        body = malformed_request_body(str(error) if error is not None else msg)
        content = [STATUS_LINE[400]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: " + PROBLEM_CONTENT_TYPE.encode("ascii") + b"\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()
