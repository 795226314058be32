"""A third-party XMPP client (slixmpp) for im/tests/slixmpp.rs.

Logs in (SCRAM; PLAIN is not offered without TLS), joins the room, waits
until it sees the occupant NICK_TO_SEE, sends it an lsim payload message,
and waits for a payload reply from that occupant. Prints what it saw and
exits 0 only if all of it happened.

usage: slixmpp_peer.py JID PASSWORD HOST PORT ROOM NICK NICK_TO_SEE
"""

import asyncio
import sys
import xml.etree.ElementTree as ET

import slixmpp

NS = "urn:lsim:0"


class Peer(slixmpp.ClientXMPP):
    def __init__(self, jid, password, room, nick, other):
        super().__init__(jid, password)
        self.room, self.nick, self.other = room, nick, other
        self.enable_direct_tls = False
        self.enable_starttls = False
        self.enable_plaintext = True
        self.plugin["feature_mechanisms"].unencrypted_scram = True
        self.register_plugin("xep_0045")
        self.saw_other = asyncio.Event()
        self.got_reply = asyncio.Event()
        self.mechanism = None
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("groupchat_message", self.on_message)
        self.add_event_handler(f"muc::{room}::got_online", self.on_online)
        self.add_event_handler("auth_success", self.on_auth)
        self.add_event_handler("failed_auth", lambda _: self.done(3, "auth failed"))

    def on_auth(self, _):
        self.mechanism = self.plugin["feature_mechanisms"].mech.name if self.plugin["feature_mechanisms"].mech else None

    async def start(self, _):
        self.send_presence()
        await self.plugin["xep_0045"].join_muc_wait(self.room, self.nick, maxstanzas=0, timeout=20)
        print(f"joined {self.room} as {self.nick} after SASL {self.mechanism}", flush=True)
        if self.other in self.plugin["xep_0045"].get_roster(self.room):
            self.saw_other.set()
        try:
            await asyncio.wait_for(self.saw_other.wait(), 20)
            print(f"saw {self.other}", flush=True)
            msg = self.make_message(mto=self.room, mtype="groupchat")
            msg.append(ET.fromstring(f'<status xmlns="{NS}" node="99" epoch="4" loss="25"/>'))
            msg.send()
            await asyncio.wait_for(self.got_reply.wait(), 20)
        except asyncio.TimeoutError:
            self.done(2, "timed out")
            return
        self.done(0, "ok")

    def on_online(self, presence):
        if presence["muc"]["nick"] == self.other:
            self.saw_other.set()

    def on_message(self, msg):
        if msg["mucnick"] != self.other:
            return
        payload = msg.xml.find(f"{{{NS}}}status")
        if payload is not None:
            print(f"payload from {self.other}: node={payload.get('node')} epoch={payload.get('epoch')}", flush=True)
            self.got_reply.set()

    def done(self, code, why):
        print(why, flush=True)
        self.code = code
        self.disconnect()


def main():
    jid, password, host, port, room, nick, other = sys.argv[1:8]
    peer = Peer(jid, password, room, nick, other)
    peer.code = 1
    peer.connect(host=host, port=int(port))
    loop = asyncio.get_event_loop()
    loop.run_until_complete(asyncio.wait_for(peer.disconnected, 60))
    sys.exit(peer.code)


if __name__ == "__main__":
    main()
