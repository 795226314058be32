"""A GPS receiver as gpsd sees one: NMEA 0183 sentences ($GPRMC and $GPGGA,
with their checksums) for one fixed place, twice a second, to gpsd's UDP
source (gpsd udp://127.0.0.1:PORT). Used by tests/gpsd.rs, which runs
Debian's gpsd on a testbed host and moves this "receiver" by starting it
again elsewhere.

usage: nmea_receiver.py PORT LAT LON SECONDS
"""

import functools
import socket
import sys
import time


def sentence(body):
    check = functools.reduce(lambda a, b: a ^ b, body.encode(), 0)
    return f"${body}*{check:02X}\r\n".encode()


def degrees(value, width, hemis):
    """NMEA's ddmm.mmmm (dddmm.mmmm for longitude) and hemisphere."""
    hemi = hemis[0] if value >= 0 else hemis[1]
    value = abs(value)
    whole = int(value)
    return f"{whole:0{width}d}{(value - whole) * 60:07.4f}", hemi


def main():
    port, lat, lon, seconds = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    la, ns = degrees(lat, 2, "NS")
    lo, ew = degrees(lon, 3, "EW")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    end = time.time() + seconds
    print(f"receiver at {lat}, {lon} -> udp 127.0.0.1:{port}", flush=True)
    while time.time() < end:
        t = time.gmtime()
        hms, dmy = time.strftime("%H%M%S.00", t), time.strftime("%d%m%y", t)
        for body in (f"GPRMC,{hms},A,{la},{ns},{lo},{ew},000.0,000.0,{dmy},,,A",
                     f"GPGGA,{hms},{la},{ns},{lo},{ew},1,08,0.9,56.0,M,-17.0,M,,"):
            s.sendto(sentence(body), ("127.0.0.1", port))
        time.sleep(0.5)


if __name__ == "__main__":
    main()
