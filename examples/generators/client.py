"""The seed's Generators client, unchanged but for the port argument.

Start the server (see easyrpc.toml beside this file), then:
    pip install easyrpc==0.251
    python examples/generators/client.py            # or: python examples/generators/client.py PORT
"""
import asyncio
import sys

from easyrpc.proxy import EasyRpcProxy


async def main(port):
    private = await EasyRpcProxy.create(
        '127.0.0.1',
        port,
        '/ws/easy',
        server_secret='abcd1234',
        namespace='private'
    )

    public = await EasyRpcProxy.create(
        '127.0.0.1',
        port,
        '/ws/easy',
        server_secret='abcd1234',
        namespace='public'
    )

    # basic generator usage
    async for item in await private['private_generator']([1, 2, 'a', 'b', 3, 4]):
        print(f"async for {item}")

    public_generator = await public['public_generator']([1, 2, 'a', 'b', 3, 4])
    while True:
        try:
            result = await public_generator.asend(None)
            print(f"asend(None) {result}")
        except StopAsyncIteration:
            break

if __name__ == '__main__':
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8220))
    sys.exit(0)
