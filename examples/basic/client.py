"""The seed's Basic Usage client, unchanged but for the port argument.

Start the server (see easyrpc.toml beside this file), then:
    pip install easyrpc==0.251
    python examples/basic/client.py            # or: python examples/basic/client.py PORT
"""
import asyncio
import sys

from easyrpc.proxy import EasyRpcProxy


async def main(port):
    proxy = await EasyRpcProxy.create(
        '127.0.0.1',
        port,
        '/ws/server_a',
        server_secret='abcd1234',
        namespace='public'
    )

    good_func_a = proxy['good_func_a']
    result = await good_func_a(1, 5, 7)
    print(result)

if __name__ == '__main__':
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8090))
    sys.exit(0)
