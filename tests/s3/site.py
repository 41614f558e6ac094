"""A real S3-compatible server on loopback for one storage site in tests:
moto in server mode, on a port the OS picks, with one bucket.

    python site.py BUCKET

Prints `listening on 127.0.0.1:PORT` once the bucket exists, then serves
until its stdin closes (it dies with the test that started it). Credentials
are moto's: any access key and secret are accepted, but requests must be
signed (AWS Signature Version 4), as object_store does.
"""

import sys

import boto3
from moto.server import ThreadedMotoServer


def main() -> None:
    bucket = sys.argv[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    port = server._server.server_port  # the port the OS chose
    s3 = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="caliop-test",
        aws_secret_access_key="caliop-test-secret",
    )
    s3.create_bucket(Bucket=bucket)
    print(f"listening on 127.0.0.1:{port}", flush=True)
    sys.stdin.read()
    server.stop()


if __name__ == "__main__":
    main()
