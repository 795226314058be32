"""slixmpp (PyPI) as one row of im/tests/interop.rs's matrix.

Logs in (plaintext, or STARTTLS with the server's self-signed certificate as
its only CA), joins ROOM as NICK, waits until it sees LSIM_NICK, sends the
groupchat body SEND, and waits for the groupchat body EXPECT from LSIM_NICK.
Prints each step; exits 0 only if all of it happened within 25 s.

usage: slixmpp_client.py JID PASSWORD HOST PORT ROOM NICK LSIM_NICK SEND EXPECT plain|starttls [CA_FILE]
"""

import asyncio
import sys
from pathlib import Path

import slixmpp


class Peer(slixmpp.ClientXMPP):
    def __init__(self, jid, password, room, nick, other, send, expect, ca_file):
        super().__init__(jid, password)
        self.room, self.nick, self.other = room, nick, other
        self.send_text, self.expect = send, expect
        self.enable_direct_tls = False
        if ca_file is None:
            self.enable_starttls = False
            self.enable_plaintext = True
            self.plugin["feature_mechanisms"].unencrypted_plain = True
            self.plugin["feature_mechanisms"].unencrypted_scram = True
        else:
            self.enable_starttls = True
            self.enable_plaintext = False
            self.ca_certs = Path(ca_file)
        self.register_plugin("xep_0045")
        self.saw_other = asyncio.Event()
        self.got_expected = asyncio.Event()
        self.code = 1
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("groupchat_message", self.on_message)
        self.add_event_handler(f"muc::{room}::got_online", self.on_online)
        self.add_event_handler("tls_success", lambda _: print("STARTTLS done", flush=True))
        self.add_event_handler("failed_auth", lambda _: self.done(3, "auth failed"))
        self.add_event_handler("connection_failed", lambda e: self.done(4, f"connection failed: {e}"))
        self.add_event_handler("stream_error", lambda e: print(f"stream error: {e}", flush=True))

    async def start(self, _):
        mech = self.plugin["feature_mechanisms"].mech
        print(f"logged in with SASL {mech.name if mech else None}", flush=True)
        self.send_presence()
        try:
            await self.plugin["xep_0045"].join_muc_wait(self.room, self.nick, maxstanzas=0, timeout=20)
            print(f"joined {self.room} as {self.nick}", flush=True)
            if self.other in self.plugin["xep_0045"].get_roster(self.room):
                self.saw_other.set()
            await asyncio.wait_for(self.saw_other.wait(), 20)
            print(f"saw {self.other}", flush=True)
            self.send_message(mto=self.room, mbody=self.send_text, mtype="groupchat")
            print(f"sent {self.send_text}", flush=True)
            await asyncio.wait_for(self.got_expected.wait(), 20)
        except (asyncio.TimeoutError, slixmpp.exceptions.PresenceError) as e:
            self.done(2, f"failed: {e!r}")
            return
        self.done(0, "ok")

    def on_online(self, presence):
        if presence["muc"]["nick"] == self.other:
            self.saw_other.set()

    def on_message(self, msg):
        if msg["mucnick"] == self.other and msg["body"] == self.expect:
            print(f"received {self.expect} from {self.other}", flush=True)
            self.got_expected.set()

    def done(self, code, why):
        print(why, flush=True)
        self.code = code
        self.disconnect()


def main():
    jid, password, host, port, room, nick, other, send, expect, mode = sys.argv[1:11]
    ca_file = sys.argv[11] if mode == "starttls" else None
    peer = Peer(jid, password, room, nick, other, send, expect, ca_file)
    peer.connect(host=host, port=int(port))
    loop = asyncio.get_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(peer.disconnected, 25))
    except asyncio.TimeoutError:
        print("timed out", flush=True)
        sys.exit(2)
    sys.exit(peer.code)


if __name__ == "__main__":
    main()
