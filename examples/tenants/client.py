"""Tenants seen from the unchanged Python client.

Start the server (see easyrpc.toml beside this file), then:
    pip install easyrpc==0.251
    python examples/tenants/client.py            # or: python examples/tenants/client.py PORT
"""
import asyncio
import sys

from easyrpc.proxy import EasyRpcProxy


async def connect(port, namespace, secret):
    return await EasyRpcProxy.create('127.0.0.1', port, '/ws/easy', server_secret=secret, namespace=namespace)


async def main(port):
    alpha = await connect(port, 'alpha', 'alpha-secret')
    print('alpha echo(hi) ->', await alpha['echo']('hi'))

    sandbox = await connect(port, 'sandbox', 'sandbox-secret')
    print('sandbox spin() ->', await sandbox['spin']())                 # stopped at the tenant's 500 ms

    everything = await connect(port, 'everything', 'everything-secret')
    print('everything mul(2.0, 3.0) ->', await everything['mul'](2.0, 3.0))  # math is in both; alpha serves first
    print('everything ok() ->', await everything['ok']())               # only sandbox has ok

    try:                                                                # alpha's secret opens only alpha
        await asyncio.wait_for(connect(port, 'sandbox', 'alpha-secret'), 3)
        print('sandbox with alpha-secret: connected (wrong!)')
    except Exception:
        print('sandbox with alpha-secret: refused')

if __name__ == '__main__':
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8220))
    sys.exit(0)
