"""The reference: a trivial Python ext_proc that answers CONTINUE to every message.

    python bench/trivial_extproc.py --ports 50061,50062

One process per port (like the sidecar's workers), grpc.aio on uvloop, no work at all:
what any Python ext_proc costs before it does anything. ``hot_path.py`` runs it behind
one ext_proc filter (request headers, buffered request body, response headers, streamed
response body: four messages for a JSON request, one more per stream chunk).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import signal
from typing import Any

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc

_COMMON = pb.CommonResponse()


def answer(msg: pb.ProcessingRequest) -> pb.ProcessingResponse:
    kind = msg.WhichOneof("request")
    if kind == "request_headers":
        return pb.ProcessingResponse(request_headers=pb.HeadersResponse(response=_COMMON))
    if kind == "request_body":
        return pb.ProcessingResponse(request_body=pb.BodyResponse(response=_COMMON))
    if kind == "response_headers":
        return pb.ProcessingResponse(response_headers=pb.HeadersResponse(response=_COMMON))
    if kind == "response_body":
        return pb.ProcessingResponse(response_body=pb.BodyResponse(response=_COMMON))
    if kind == "request_trailers":
        return pb.ProcessingResponse(request_trailers=pb.TrailersResponse())
    return pb.ProcessingResponse(response_trailers=pb.TrailersResponse())


class Trivial(pb_grpc.ExternalProcessorServicer):  # type: ignore[misc]
    async def Process(self, request_iterator: Any, context: Any) -> None:
        while True:
            msg = await context.read()
            if msg is grpc.aio.EOF:
                return
            if not msg.observability_mode:
                await context.write(answer(msg))


async def serve(port: int) -> None:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    pb_grpc.add_ExternalProcessorServicer_to_server(Trivial(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1)


def worker(port: int) -> None:
    import uvloop

    uvloop.run(serve(port))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ports", required=True)
    ports = [int(p) for p in parser.parse_args().ports.split(",")]
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=worker, args=(p,)) for p in ports]
    for p in procs:
        p.start()

    def forward(_signum: int, _frame: object) -> None:
        for p in procs:
            p.terminate()

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for p in procs:
        p.join()


if __name__ == "__main__":
    main()
