#!/usr/bin/env python3
"""A Python easyrpc 0.251 cluster node for the cluster tests (tests/integration/cluster.rs).

Starts an EasyRpcServer on 127.0.0.1:--port at --path, serving in --namespace:
    py_func(x)  -> {"py": x}
    py_gen(n)   -> yields 0 .. n-1
and, with --parent HOST:PORT, links that namespace to the parent's namespace of the same name
with create_server_proxy (the Python original's server chaining), as a child.

    python cluster_node.py --port 8230 --path /ws/py --secret s --namespace peer \
        [--parent 127.0.0.1:8220 --parent-path /ws/easy --parent-secret s]
"""
import argparse


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--port', type=int, required=True)
    p.add_argument('--path', default='/ws/py')
    p.add_argument('--secret', required=True)
    p.add_argument('--namespace', required=True)
    p.add_argument('--parent')
    p.add_argument('--parent-path', default='/ws/easy')
    p.add_argument('--parent-secret')
    args = p.parse_args()

    import uvicorn
    from fastapi import FastAPI
    from easyrpc.server import EasyRpcServer
    app = FastAPI()

    def py_func(x):
        return {'py': x}

    def py_gen(n):
        for i in range(n):
            yield i

    @app.on_event('startup')
    async def setup():
        rpc = EasyRpcServer(app, args.path, server_secret=args.secret)
        rpc.origin(py_func, namespace=args.namespace)
        rpc.origin(py_gen, namespace=args.namespace)
        if args.parent:
            host, port = args.parent.rsplit(':', 1)
            await rpc.create_server_proxy(
                host, int(port), args.parent_path,
                server_secret=args.parent_secret or args.secret, namespace=args.namespace)

    uvicorn.run(app, host='127.0.0.1', port=args.port, log_level='warning')


if __name__ == '__main__':
    main()
