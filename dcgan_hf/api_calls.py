"""The shape of a queued call, checked before Gradio sees it, so every refusal says what is wrong.

Gradio answers a call with too few values ``{"error": null}`` (its message is hidden with
``show_error=False``), takes too many silently, answers a ``/call/v2`` keyword it does not know
with a bare 500, and would download a file given by URL into its cache, at any size, before
any handler could look at it. :class:`ApiShapes` holds each endpoint's parameters (from the
app's own API description) and each event's input count, and refuses such a call with a 4xx
and one sentence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from . import bounded_json
from .uploads import UploadRefused

CALL = re.compile(r"/gradio_api/call/(v2/)?([^/]+)$")
JOIN = re.compile(r"/gradio_api/queue/join$")
KNOWN_EXTRAS = {"oauth_token"}  # Gradio's own keyword, taken by every v2 call
# a call carries values and file references, never file contents (the body is bounded before this)
CALL_JSON = bounded_json.JSONLimits(max_bytes=1 << 30, max_depth=32, max_values=20_000)


@dataclass(frozen=True)
class Endpoint:
    """A public endpoint: its parameters in order, the ones without a default, how many values a call sends."""

    name: str
    parameters: tuple[str, ...]
    required: frozenset[str]
    counts: frozenset[int]  # ``data`` lengths Gradio maps onto its inputs

    def describe(self) -> str:
        return f"/{self.name}({', '.join(self.parameters)})"


@dataclass(frozen=True)
class ApiShapes:
    endpoints: Mapping[str, Endpoint]
    inputs_by_event: Mapping[int, int]  # fn_index → number of inputs (the page's queue/join)

    @classmethod
    def of(cls, blocks: Any) -> "ApiShapes":
        """The shapes of a built ``gr.Blocks``: its named endpoints (public or undocumented) and every event."""
        info = blocks.get_api_info(all_endpoints=True)["named_endpoints"]
        endpoints = {}
        for dependency in blocks.fns.values():
            name = dependency.api_name
            described = info.get(f"/{name}")
            if not name or described is None:
                continue
            parameters = described["parameters"]
            api_inputs = [block for block in dependency.inputs if not getattr(block, "skip_api", False)]
            endpoints[name] = Endpoint(
                name, tuple(item["parameter_name"] for item in parameters),
                frozenset(item["parameter_name"] for item in parameters if not item["parameter_has_default"]),
                frozenset({len(dependency.inputs), len(api_inputs)}))
        return cls(endpoints, {index: len(dependency.inputs) for index, dependency in blocks.fns.items()})

    def check(self, path: str, body: bytes) -> None:
        """Refuse (UploadRefused) a call or join ``body`` on ``path`` that Gradio would not answer with a message."""
        call, join = CALL.search(path), JOIN.search(path)
        if not (call or join):
            return
        if call and call.group(2) not in self.endpoints:  # Gradio answers an unknown name with a bare 500
            raise UploadRefused(404, f"no endpoint named {call.group(2)[:60]!r}; this app has "
                                     f"{', '.join(sorted(self.endpoints))}")
        try:
            payload = bounded_json.loads(body, CALL_JSON, strict=False)
        except bounded_json.JSONLimitError as error:
            raise UploadRefused(400, f"the call's JSON is {error}") from None
        except ValueError:
            return  # not JSON: Gradio answers that itself, with a message
        check_no_remote_files(payload)
        if call and call.group(1):
            self._check_keywords(self.endpoints[call.group(2)], payload)
        elif call:
            self._check_values(self.endpoints[call.group(2)], payload)
        else:
            self._check_join(payload)

    @staticmethod
    def _check_values(endpoint: Endpoint, payload: Any) -> None:
        values = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(values, list):
            raise UploadRefused(400, f'send {{"data": [...]}}: the values of {endpoint.describe()}, in order')
        if len(values) not in endpoint.counts:
            count = len(endpoint.parameters)
            raise UploadRefused(400, f"{endpoint.describe()} takes {count} value{'s' * (count != 1)}, "
                                     f"got {len(values)}")

    @staticmethod
    def _check_keywords(endpoint: Endpoint, payload: Any) -> None:
        if not isinstance(payload, dict):
            raise UploadRefused(400, f"send a JSON object of {endpoint.describe()}'s parameters by name")
        unknown = sorted(set(payload) - set(endpoint.parameters) - KNOWN_EXTRAS)
        if unknown:
            raise UploadRefused(400, f"{endpoint.describe()} has no parameter "
                                     f"{', '.join(repr(name[:40]) for name in unknown[:5])}")
        missing = sorted(endpoint.required - set(payload))
        if missing:
            raise UploadRefused(400, f"{endpoint.describe()} needs {', '.join(missing)}")

    def _check_join(self, payload: Any) -> None:
        if not isinstance(payload, dict):
            return  # Gradio answers that itself, with a message
        index, values = payload.get("fn_index"), payload.get("data")
        if type(index) is int and index not in self.inputs_by_event:
            raise UploadRefused(404, f"no event {index}")
        if type(index) is int and isinstance(values, list) and len(values) != self.inputs_by_event[index]:
            raise UploadRefused(400, f"event {index} takes {self.inputs_by_event[index]} values, got {len(values)}")


def check_no_remote_files(payload: Any) -> None:
    """A queued call may name files only by the path of an upload: Gradio would fetch a URL given as
    a file's ``path`` (with no size limit) into its cache before any handler could check it."""
    pending = [payload]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            location = item.get("path")
            if isinstance(location, str) and re.match(r"\s*(https?|ftp)://", location, re.IGNORECASE):
                raise UploadRefused(400, "files must be uploaded (gradio_client's handle_file does it); "
                                         "URLs are not fetched")
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
