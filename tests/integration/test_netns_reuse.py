"""A slot's network namespace is reused only while it is provably as new.

One slot, so every submission lands in the same one. The namespace's inode tells whether
a run got the slot's kept namespace (the same inode as other clean runs) or a fresh one.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from backend.testing import ServerProcess
from tests.conftest import Client

# inode of the namespace, then what a new namespace holds: socket table lines, interfaces, lo's
# packet counters, and the IP/TCP/UDP counters a run moves (sent, unroutable, opened, datagrams).
PROBE = """import os
tcp = open('/proc/net/tcp').read().splitlines()
dev = [l.split() for l in open('/proc/net/dev').read().splitlines()[2:]]
snmp = open('/proc/net/snmp').read().splitlines()
table = {}
for names, values in zip(snmp[::2], snmp[1::2]):
    proto = names.split(':')[0]
    table.update({proto + '.' + n: v for n, v in zip(names.split()[1:], values.split()[1:])})
moved = [table[k] for k in ('Ip.OutRequests', 'Ip.OutNoRoutes', 'Tcp.ActiveOpens', 'Udp.OutDatagrams')]
print(os.stat('/proc/self/ns/net').st_ino, len(tcp), [d[0] for d in dev], dev[0][1:3], dev[0][9:11], moved)
"""
NEW = "1 ['lo:'] ['0', '0'] ['0', '0'] ['0', '0', '0', '0']\n"
TIME_WAIT = """import socket
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()
c = socket.create_connection(s.getsockname()); a, _ = s.accept()
c.close(); a.close(); s.close()  # the side that closes first keeps a TIME_WAIT socket
print('ok')
"""
UDP_TO_SELF = """import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b'x', ('127.0.0.1', 9)); s.close()
print('ok')
"""
UNREACHABLE = """import socket
try:
    socket.create_connection(('10.1.2.3', 80), timeout=1)
except OSError:
    print('ok')
"""
LISTENER_DAEMON = """import os, socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', 45678)); s.listen()
u = socket.socket(socket.AF_UNIX); u.bind('\\0piston-left-behind'); u.listen()
if os.fork() == 0:
    os.setsid()
    time.sleep(60)
print('ok')
"""
FIND_LISTENER = """import socket
for family, address in [(socket.AF_INET, ('127.0.0.1', 45678)), (socket.AF_UNIX, '\\0piston-left-behind')]:
    try:
        socket.socket(family).connect(address)
        print('FOUND', address)
    except OSError:
        print('gone')
"""


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with ServerProcess({"MAX_CONCURRENT_JOBS": "1"}) as server:
        yield Client(server.url)


def probe(client: Client) -> tuple[str, str]:
    out = client.execute("python", PROBE)["run"]["stdout"]
    inode, state = out.split(" ", 1)
    return inode, state


def test_clean_runs_share_the_slot_namespace_and_it_is_as_new(client: Client) -> None:
    assert client.get("/health").json()["sandbox"]["kept_netns"] is True  # root, as here
    first, state = probe(client)
    second, again = probe(client)
    assert first == second, "the kept namespace is not reused"
    # Only a header in the TCP table, only lo, and lo never carried a packet.
    assert state == again == NEW, state


@pytest.mark.parametrize("code", [TIME_WAIT, UDP_TO_SELF, UNREACHABLE],
                         ids=["time-wait-socket", "packet-on-loopback", "unreachable-connect"])
def test_a_run_that_used_the_network_leaves_nothing_for_the_next(client: Client, code: str) -> None:
    # Each of these moves what PROBE reads, so handing the used namespace on would show.
    assert client.execute("python", code)["run"]["stdout"] == "ok\n"
    _, state = probe(client)
    assert state == NEW, state


def test_listening_sockets_die_with_their_run(client: Client) -> None:
    assert client.execute("python", LISTENER_DAEMON)["run"]["stdout"] == "ok\n"
    run = client.execute("python", FIND_LISTENER)["run"]
    assert run["stdout"] == "gone\ngone\n", run
