"""Registers servicer objects with a grpc.aio server from the service descriptors.

Each method is wrapped once, here: every string field is checked (strings.py),
domain errors become statuses with details,
unexpected ones INTERNAL (logged, message not leaked), and every call is counted.
Servicers are plain classes with one `async def Method(request, context)` per RPC,
so no untyped generated base class is needed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import descriptor, message_factory

from policy_sidecar.admin.errors import status_for
from policy_sidecar.admin.metrics import AdminMetrics
from policy_sidecar.admin.strings import check_strings

__all__ = ["generic_handler"]

log = logging.getLogger(__name__)

Method = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]


def _wrap(full_name: str, method: Method, metrics: AdminMetrics) -> Method:
    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            # Every string of every request, before any servicer or the database sees it.
            check_strings(request)
            return await method(request, context)
        except Exception as exc:
            status = status_for(exc)
            if status is None:
                log.exception("admin %s failed", full_name)
                code = grpc.StatusCode.INTERNAL
                await context.abort(code, "internal error (logged on the server)")
            else:
                code = status.code
                await context.abort(status.code, status.details, status.trailing_metadata)
            raise
        finally:
            metrics.requests.labels(full_name, code.name).inc()
            metrics.seconds.labels(full_name).observe(time.perf_counter() - started)

    return call


def generic_handler(
    service: descriptor.ServiceDescriptor, servicer: object, metrics: AdminMetrics
) -> grpc.GenericRpcHandler:
    """Handlers for every method of `service`; the servicer must implement them all."""
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for method in service.methods:
        impl = getattr(servicer, method.name, None)
        if impl is None:
            raise TypeError(f"{type(servicer).__name__} does not implement {method.full_name}")
        request_cls = message_factory.GetMessageClass(method.input_type)
        response_cls = message_factory.GetMessageClass(method.output_type)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            _wrap(method.full_name, impl, metrics),
            request_deserializer=request_cls.FromString,
            response_serializer=response_cls.SerializeToString,
        )
    return grpc.method_handlers_generic_handler(service.full_name, handlers)
