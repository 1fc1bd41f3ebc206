#!/usr/bin/env python3
"""Calls one gRPC method over TLS with the real grpcio stack; tests/tls.rs drives it.

    grpc_tls_probe.py TARGET CA_PEM CLIENT_CERT|- CLIENT_KEY|- METHOD REQUEST_HEX

Prints the serialized response as hex. On a gRPC error prints its code and details to
stderr and exits 2.
"""
import sys

import grpc


def main():
    target, ca, cert, key, method, request_hex = sys.argv[1:7]
    read = lambda path: None if path == "-" else open(path, "rb").read()
    credentials = grpc.ssl_channel_credentials(
        root_certificates=read(ca), private_key=read(key), certificate_chain=read(cert)
    )
    with grpc.secure_channel(target, credentials) as channel:
        call = channel.unary_unary(method)
        try:
            response = call(bytes.fromhex(request_hex), timeout=20)
        except grpc.RpcError as error:
            print(f"{error.code().name}: {error.details()}", file=sys.stderr)
            sys.exit(2)
    print(response.hex())


if __name__ == "__main__":
    main()
