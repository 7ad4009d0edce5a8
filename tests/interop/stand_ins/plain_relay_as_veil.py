#!/usr/bin/env python3
"""Harness self-check only: a byte relay that does NOT rewrite broker addresses.

Accepts Veil's command line (`run --config FILE --listen HOST:PORT --upstream HOST:PORT`)
and forwards bytes unchanged, so clients learn the real broker's address from
metadata and connect to it directly. The interop suite must FAIL the veil route
with it (tests/interop/test_harness.py checks that).
"""

import argparse
import asyncio

ap = argparse.ArgumentParser()
ap.add_argument("command", choices=["run"])
ap.add_argument("--config")
ap.add_argument("--listen", required=True)
ap.add_argument("--upstream", required=True)
a = ap.parse_args()
lhost, lport = a.listen.rsplit(":", 1)
uhost, uport = a.upstream.rsplit(":", 1)


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def handle(creader, cwriter):
    try:
        ureader, uwriter = await asyncio.open_connection(uhost, int(uport))
    except OSError:
        cwriter.close()
        return
    await asyncio.gather(pipe(creader, uwriter), pipe(ureader, cwriter))


async def main():
    server = await asyncio.start_server(handle, lhost, int(lport))
    async with server:
        await server.serve_forever()


asyncio.run(main())
