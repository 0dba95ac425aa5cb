#!/usr/bin/env python3
"""delay-relay PORT UPSTREAM_HOST UPSTREAM_PORT DELAY_MS

A TCP relay on 127.0.0.1:PORT that holds every byte DELAY_MS before passing it on, in
both directions: the latency half of `tc netem`, which this machine's kernel lacks
(CONFIG_NET_SCH_NETEM unset). Order and end-of-stream are kept; a reset on one side
closes the other. Prints "ready" once listening."""
import asyncio
import sys
import time


async def pipe(reader, writer, delay):
    queue = asyncio.Queue()

    async def receive():
        while True:
            try:
                data = await reader.read(65536)
            except (ConnectionError, OSError):
                data = b""
            await queue.put((time.monotonic() + delay, data))
            if not data:
                return

    async def send():
        while True:
            due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                if not data:
                    writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
            except (ConnectionError, OSError):
                return

    await asyncio.gather(receive(), send())


async def main():
    port, host, upstream_port, delay_ms = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    delay = int(delay_ms) / 1000.0

    async def client(c_reader, c_writer):
        try:
            u_reader, u_writer = await asyncio.open_connection(host, int(upstream_port))
        except OSError:
            c_writer.close()
            return
        await asyncio.gather(pipe(c_reader, u_writer, delay), pipe(u_reader, c_writer, delay))
        for w in (c_writer, u_writer):
            w.close()

    server = await asyncio.start_server(client, "127.0.0.1", int(port))
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
