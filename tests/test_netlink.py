"""eventsources._netlink: socket setup, nlmsghdr packing and the non-blocking reader, on real netlink sockets.

The reader is fed by NETLINK_USERSOCK multicast (process to process, no kernel facility
touched): a tiny receive buffer overflows for real, which the kernel reports as ENOBUFS.
"""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from eventsources._netlink import NLMSGHDR, NetlinkReader, open_netlink, pack_nlmsg

NETLINK_USERSOCK = 2
GROUP = 1 << 4  # multicast group 5 of NETLINK_USERSOCK


def test_pack_nlmsg_layout() -> None:
    msg = pack_nlmsg(1000, b"abcde", flags=5, seq=9)
    assert len(msg) == 16 + 8  # padded to 4 bytes
    assert NLMSGHDR.unpack_from(msg) == (16 + 5, 1000, 5, 9, 0)  # nlmsg_len counts no padding
    assert msg[16:] == b"abcde\0\0\0"
    assert pack_nlmsg(3) == NLMSGHDR.pack(16, 3, 0, 0, 0)


def _multicast(tx: socket.socket, msg: bytes) -> None:
    """Send ``msg`` to GROUP.  Netlink delivers the multicast copies first, then tries a unicast to
    port 0 (the kernel), which has no NETLINK_USERSOCK receiver: that part is refused."""
    try:
        tx.sendto(msg, (0, GROUP))
    except ConnectionRefusedError:
        pass


def _pair(rcvbuf: int = 0) -> tuple[socket.socket, socket.socket]:
    try:
        rx = open_netlink(NETLINK_USERSOCK, groups=GROUP, rcvbuf=rcvbuf)
    except OSError as exc:
        pytest.skip(f"the kernel refuses a NETLINK_USERSOCK multicast socket: {exc}")
    tx = open_netlink(NETLINK_USERSOCK)
    return rx, tx


def test_open_netlink_binds_and_sets_the_receive_buffer() -> None:
    rx, tx = _pair(rcvbuf=4 << 20)
    try:
        portid, groups = rx.getsockname()
        assert portid != 0 and groups == GROUP
        # the kernel doubles what it was asked (bookkeeping); without root SO_RCVBUF caps it at rmem_max
        got = rx.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        if os.geteuid() == 0:
            assert got >= 4 << 20
        else:
            assert got > 0
    finally:
        rx.close()
        tx.close()
    with pytest.raises(OSError):
        open_netlink(NETLINK_USERSOCK, sock_type=socket.SOCK_STREAM)  # netlink has no stream sockets


async def test_reader_delivers_datagrams_and_counts_enobufs() -> None:
    rx, tx = _pair(rcvbuf=4096)
    if os.geteuid() != 0:
        rx.close()
        tx.close()
        pytest.skip("sending to a NETLINK_USERSOCK multicast group needs CAP_NET_ADMIN")
    got: list[bytes] = []
    reader = NetlinkReader(got.append, what="test", batch=8)
    try:
        reader.attach(rx)
        msg = pack_nlmsg(0x20, b"x" * 200)
        _multicast(tx, msg)
        for _ in range(200):  # the loop runs the reader
            if got:
                break
            await asyncio.sleep(0.01)
        assert got == [msg]
        # a burst far beyond a 4 KiB buffer, sent while the loop is not reading: the kernel drops and says ENOBUFS
        for i in range(500):
            _multicast(tx, pack_nlmsg(0x20, i.to_bytes(4, "little") + b"y" * 200))
        for _ in range(200):
            await asyncio.sleep(0.01)
            if reader.overruns and len(got) > 1:
                break
        assert reader.overruns >= 1
        assert 1 < len(got) < 501  # some arrived, the rest were lost and counted
        _multicast(tx, msg)
        sock = reader.detach()  # drains what is queued before returning the socket
        assert sock is rx and got[-1] == msg
        assert reader.sock is None and reader.detach() is None
    finally:
        reader.detach(drain=False)
        rx.close()
        tx.close()


async def test_linger_reads_a_trickle_in_batches() -> None:
    rx, tx = _pair(rcvbuf=1 << 20)
    if os.geteuid() != 0:
        rx.close()
        tx.close()
        pytest.skip("sending to a NETLINK_USERSOCK multicast group needs CAP_NET_ADMIN")
    got: list[bytes] = []
    callbacks: list[int] = []  # datagrams seen at each readable callback
    reader = NetlinkReader(
        got.append, what="test", batch=64, before_batch=lambda: callbacks.append(len(got)), linger=3600.0
    )  # after the first read the socket is not watched again in this test
    try:
        reader.attach(rx)
        _multicast(tx, pack_nlmsg(0x20, b"first"))
        for _ in range(200):
            if got:
                break
            await asyncio.sleep(0.01)
        assert len(got) == 1 and callbacks == [0]
        for i in range(5):  # a trickle while the reader lingers: queued in the socket, not read one by one
            _multicast(tx, pack_nlmsg(0x20, bytes([i])))
            await asyncio.sleep(0.01)
        assert len(got) == 1 and callbacks == [0]
        assert reader._resume is not None
        reader._resume.cancel()  # end the linger now (what its call_later would do): one callback reads them all
        reader._watch_again(rx)
        for _ in range(200):
            if len(got) == 6:
                break
            await asyncio.sleep(0.01)
        assert len(got) == 6 and callbacks == [0, 1]
        _multicast(tx, pack_nlmsg(0x20, b"last"))
        sock = reader.detach()  # cancels the pending resume and still reads what is queued
        assert sock is rx and got[-1][16:20] == b"last" and reader._resume is None
    finally:
        reader.detach(drain=False)
        rx.close()
        tx.close()


async def test_many_hands_over_each_read_as_a_list_in_order_and_a_long_drain_in_chunks() -> None:
    rx, tx = _pair(rcvbuf=8 << 20)
    if os.geteuid() != 0:
        rx.close()
        tx.close()
        pytest.skip("sending to a NETLINK_USERSOCK multicast group needs CAP_NET_ADMIN")
    calls: list[list[bytes]] = []
    after: list[int] = []  # datagrams handed over when each read ended
    reader = NetlinkReader(
        calls.append, what="test", batch=64, many=True, after_batch=lambda: after.append(sum(map(len, calls)))
    )
    try:
        reader.attach(rx)
        msgs = [pack_nlmsg(0x20, i.to_bytes(4, "little")) for i in range(3)]
        for msg in msgs:
            _multicast(tx, msg)
        for _ in range(200):  # the loop runs the reader
            if sum(map(len, calls)) == 3:
                break
            await asyncio.sleep(0.01)
        assert [m for call in calls for m in call] == msgs
        assert all(isinstance(call, list) and call for call in calls) and after[-1] == 3
        calls.clear()
        reader.detach(drain=False)
        burst = [pack_nlmsg(0x20, i.to_bytes(4, "little")) for i in range(2500)]
        for msg in burst:  # queued while nothing reads: one drain until EAGAIN takes them all
            _multicast(tx, msg)
        reader.attach(rx)
        reader.detach()
        assert [m for call in calls for m in call] == burst and reader.overruns == 0
        assert [len(call) for call in calls] == [1024, 1024, 452]  # in chunks, not one list of everything
    finally:
        reader.detach(drain=False)
        rx.close()
        tx.close()
