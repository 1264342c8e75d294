"""The seed's multiple-namespaces client, unchanged but for the port argument.

Start the server (see easyrpc.toml beside this file), then:
    pip install easyrpc==0.251
    python examples/namespaces/client.py            # or: python examples/namespaces/client.py PORT
"""
import asyncio
import sys

from easyrpc.proxy import EasyRpcProxy


async def main(port):
    easy_proxy = await EasyRpcProxy.create(
        '127.0.0.1',
        port,
        '/ws/easy',
        server_secret='abcd1234',
        namespace='private'
    )

    result = await easy_proxy['private_function'](1, 5, 7)
    print(result)

    result = await easy_proxy.proxy_funcs['open_function'](1, keyword='value')
    print(result)

    print(sorted(easy_proxy.proxy_funcs))

if __name__ == '__main__':
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8220))
    sys.exit(0)
