#!/usr/bin/env python3
"""A TAK device on the local network, made of takproto (PyPI), a library no
one on the lsim project wrote: it sends a position report (CoT XML, as ATAK
writes it) and a GeoChat message (TAK Protocol v1, through takproto's
xml2proto), and prints every event it hears on the TAK groups as takproto
parses it, one line each (it sends hostile datagrams first, as callsign EVIL:
a DTD with entities, 60 KB of garbage, a wrong type, a position off the
globe, malformed v1):

  GOT <form> uid=<uid> type=<type> callsign=<callsign> chatroom=<room> text=<text>

Usage: tak_peer.py IFACE_ADDR SECONDS CHATROOM
"""
import socket
import struct
import sys
import time
import xml.etree.ElementTree as ET

import takproto
from takproto.constants import TAKProtoVer

PLI = ("239.2.3.1", 6969)
CHAT = ("224.10.10.1", 17012)


def listener(group, iface):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("0.0.0.0", group[1]))
    mreq = struct.pack("4s4s", socket.inet_aton(group[0]), socket.inet_aton(iface))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    s.setblocking(False)
    return s


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".000Z"


def main():
    iface, seconds, room = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    socks = [listener(PLI, iface), listener(CHAT, iface)]
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    out.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(iface))
    out.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    # What it hears is others' only (takproto itself expands a DTD's entities
    # and stops on malformed v1: it must not read its own hostile datagrams).
    out.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
    now = time.time()
    pli = (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><event version="2.0" uid="ANDROID-e7" '
        f'type="a-f-G-U-C" time="{iso(now)}" start="{iso(now)}" stale="{iso(now + 300)}" how="m-g">'
        f'<point lat="-33.8568" lon="151.2153" hae="20.0" ce="8.0" le="9999999.0"/>'
        f'<detail><contact endpoint="*:-1:stcp" callsign="ENGINE 7"/><__group name="Cyan" role="Team Member"/></detail></event>'
    ).encode()
    chat = (
        f'<event version="2.0" uid="GeoChat.ANDROID-e7.{room}.msg-1" type="b-t-f" time="{iso(now)}" '
        f'start="{iso(now)}" stale="{iso(now + 86400)}" how="h-g-i-g-o">'
        f'<point lat="-33.8568" lon="151.2153" hae="20.0" ce="8.0" le="9999999.0"/><detail>'
        f'<__chat parent="RootContactGroup" groupOwner="false" messageId="msg-1" chatroom="{room}" id="{room}" '
        f'senderCallsign="ENGINE 7"><chatgrp uid0="ANDROID-e7" uid1="{room}" id="{room}"/></__chat>'
        f'<link uid="ANDROID-e7" type="a-f-G-U-C" relation="p-p"/>'
        f'<remarks source="BAO.F.ATAK.ANDROID-e7" to="{room}" time="{iso(now)}">water at the north gate</remarks>'
        f"</detail></event>"
    ).encode()
    chat_v1 = bytes(takproto.xml2proto(chat, TAKProtoVer.MESH))
    # Hostile first, as callsign EVIL: none of it may reach the group.
    hostile = [
        b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY a "EVILEVIL"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
        b'<event uid="&b;"/>',
        b"<" + b"E" * 60000,
        pli.replace(b'type="a-f-G-U-C"', b'type="a f<G"').replace(b"ENGINE 7", b"EVIL"),
        pli.replace(b'lat="-33.8568"', b'lat="123.0"').replace(b"ENGINE 7", b"EVIL"),
        b"\xbf\x01\xbf\xff\xff\xff\xff\x0f" + b"EVIL" * 10,
    ]
    end = now + seconds
    next_send, sends = now + 2, 0
    while time.time() < end:
        if sends < 3 and time.time() >= next_send:
            # Three times: the radio loses some (ATAK repeats too).
            for h in hostile:
                out.sendto(h, PLI)
                out.sendto(h, CHAT)
            out.sendto(pli, PLI)
            out.sendto(chat_v1, CHAT)
            sends += 1
            next_send = time.time() + 2
        for s in socks:
            try:
                data, _ = s.recvfrom(65536)
            except BlockingIOError:
                continue
            report(data)
        time.sleep(0.02)


def report(data):
    if data[:3] == b"\xbf\x01\xbf":
        form, msg = "v1", takproto.parse_proto(data)
    else:
        form = "xml"
        try:
            msg = takproto.parse_proto(takproto.xml2proto(data, TAKProtoVer.MESH))
        except Exception as e:  # noqa: BLE001 - a line saying why, for the test
            print(f"BAD xml {e!r}", flush=True)
            return
    if msg is None:
        print("BAD unparsed", flush=True)
        return
    ev = msg.cotEvent
    room = text = ""
    if ev.detail.xmlDetail:
        d = ET.fromstring(f"<detail>{ev.detail.xmlDetail}</detail>")
        c = d.find("__chat")
        r = d.find("remarks")
        room = c.get("chatroom", "") if c is not None else ""
        text = (r.text or "") if r is not None else ""
    print(
        f"GOT {form} uid={ev.uid} type={ev.type} callsign={ev.detail.contact.callsign} "
        f"lat={ev.lat:.4f} chatroom={room} text={text}",
        flush=True,
    )


if __name__ == "__main__":
    main()
