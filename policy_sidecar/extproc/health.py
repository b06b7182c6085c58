"""grpc.health.v1 ``Check`` on the ext_proc port, for the in-house gRPC server
(``extproc.h2grpc``): Kubernetes' gRPC probes and ``deploy/docker/probe.py`` ask it.

``Watch`` is not served (UNIMPLEMENTED): probes use ``Check``.
"""

from __future__ import annotations

from grpc_health.v1 import health_pb2

from policy_sidecar.extproc import h2grpc

CHECK_PATH = "/grpc.health.v1.Health/Check"
_NOT_FOUND = 5


class Health:
    """The serving status of the whole server (service ``""``)."""

    def __init__(self) -> None:
        self.serving = False

    async def check(self, stream: h2grpc.Stream) -> None:
        request = await stream.read()
        if request is h2grpc.EOF:
            return
        if request.service:
            raise h2grpc.StatusError(_NOT_FOUND, f"unknown service {request.service!r}")
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if self.serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await stream.write(health_pb2.HealthCheckResponse(status=status))

    def method(self) -> h2grpc.Method:
        return h2grpc.Method(
            self.check,
            health_pb2.HealthCheckRequest.FromString,
            health_pb2.HealthCheckResponse.SerializeToString,
        )
