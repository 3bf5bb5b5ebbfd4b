"""Response function set: Response, DERControlResponse, ResponseSet and lists."""

from dataclasses import field

from .base import IdentifiedObject, List, ListLink, PollRateT, Resource
from .codec import resource
from .types import LFDIT, MRIDT, ResponseStatusT, TimeT

__all__ = ["Response", "DERControlResponse", "ResponseList", "ResponseSet", "ResponseSetList"]


@resource
class Response(Resource):
    """``status`` is a :class:`~sepgw.model.types.ResponseStatus` when it is a known value."""
    createdDateTime: TimeT | None = None
    endDeviceLFDI: LFDIT
    status: ResponseStatusT | None = None
    subject: MRIDT


@resource
class DERControlResponse(Response):
    """The PEV's Event Received / Event Started responses (V2G-4.6.4)."""


_Response = Response


@resource
class ResponseList(List):
    Response: list[_Response] = field(default_factory=list)


@resource
class ResponseSet(IdentifiedObject):
    ResponseListLink: ListLink | None = None


_ResponseSet = ResponseSet


@resource
class ResponseSetList(List):
    pollRate: PollRateT = None
    ResponseSet: list[_ResponseSet] = field(default_factory=list)
