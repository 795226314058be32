"""The member's web client in a real browser: headless Chromium (Debian's
chromium and chromium-driver) driven by WebDriver (Debian's python3-selenium).

Run by tests/web.rs, which starts the group (a server and three members with
`lsim chat --web`) and passes a JSON file naming each member's page URL, the
files to send, and where to put screenshots. Exits 0 when every check holds;
otherwise prints what failed and exits 1.
"""

import json
import os
import struct
import sys
import time
import urllib.error
import urllib.request
import zlib

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

WAIT = 40


def browser(width, height):
    o = webdriver.ChromeOptions()
    o.binary_location = "/usr/bin/chromium"
    for a in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              f"--window-size={width},{height}", "--no-first-run", "--disable-extensions"]:
        o.add_argument(a)
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)
    d.set_page_load_timeout(WAIT)
    return d


def until(d, what, fn, limit=WAIT):
    try:
        return WebDriverWait(d, limit, poll_frequency=0.2).until(lambda _: fn())
    except Exception as e:  # noqa: BLE001 (the timeout, with what we waited for)
        raise AssertionError(f"timed out waiting for {what}") from e


def js(d, script, *args):
    return d.execute_script(script, *args)


def chats(d):
    return js(d, "return [...document.querySelectorAll('#timeline li.chat')].map(li => ({"
                 "from: li.dataset.from, text: li.querySelector('.text').textContent,"
                 "private: li.classList.contains('private'), title: li.title}))")


def has_chat(d, text):
    return next((c for c in chats(d) if c["text"] == text), None)


def members(d):
    return js(d, "return [...document.querySelectorAll('#room li')].map(li => li.dataset.user)")


def file_entry(d, name):
    return js(d, "for (const li of document.querySelectorAll('#timeline li.file')) {"
                 "  if (li.querySelector('.meta').textContent.includes(arguments[0])) return {"
                 "    id: li.dataset.id, state: li.dataset.state, progress: +li.dataset.progress, kind: li.dataset.kind,"
                 "    imgs: [...li.querySelectorAll('img.shown')].map(i => ({complete: i.complete, w: i.naturalWidth})),"
                 "    frames: li.querySelectorAll('iframe').length, link: !!li.querySelector('a.download[download]'),"
                 "    meta: li.querySelector('.meta').textContent}; }"
                 "return null;", name)


def positions(d):
    return js(d, "return [...document.querySelectorAll('#positions li')].map(li => ({"
                 "who: li.dataset.who, where: li.querySelector('a.where').textContent,"
                 "href: li.querySelector('a.where').getAttribute('href'), own: li.classList.contains('own'),"
                 "age: li.querySelector('.age').textContent}))")


def no_script_ran(d, who):
    assert js(d, "return window.__pwned === undefined"), f"{who}: a script from group content ran"
    assert js(d, "return document.querySelectorAll('#timeline script, #timeline img:not(.shown), #timeline a[href^=javascript]').length") == 0, \
        f"{who}: group content became markup"


def say(d, text):
    box = d.find_element(By.ID, "text")
    box.send_keys(text)
    d.find_element(By.ID, "send").click()


def choose(d, users):
    for box in d.find_elements(By.CSS_SELECTOR, "#to-list input.to"):
        want = box.get_attribute("value") in users
        if box.is_selected() != want:
            box.click()


def send_file(d, path):
    d.find_element(By.ID, "file").send_keys(path)


def png(path, width, height, noise=True):
    """A valid RGB PNG: noise (incompressible, for sizes) or contour lines
    like a map's (for the screenshots)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    def contour(x, y):
        h = ((x - width // 3) ** 2 + (y - height // 2) ** 2) // 97 + ((x - 3 * width // 4) ** 2 + y * y) // 211
        return (60, 90, 50) if h % 12 == 0 else (222 - h % 30, 214 - h % 20, 180)
    if noise:
        rows = b"".join(b"\0" + os.urandom(width * 3) for _ in range(height))
    else:
        rows = b"".join(b"\0" + bytes(c for x in range(width) for c in contour(x, y)) for y in range(height))
    body = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    body += chunk(b"IDAT", zlib.compress(rows, 1)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(body)
    return path


def http(url, headers=None, method="GET", data=None):
    req = urllib.request.Request(url, headers=headers or {}, method=method, data=data)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers)


def refusals(url):
    base, token = url.split("/?t=")
    host = base.removeprefix("http://")
    checks = [
        ("no token", http(base + "/")[0], 401),
        ("no token, events", http(base + "/events")[0], 401),
        ("wrong token", http(base + "/?t=" + ("0" * 64 if token != "0" * 64 else "1" * 64))[0], 401),
        ("another origin", http(base + "/events?t=" + token, {"Origin": "http://evil.example"})[0], 403),
        ("another origin posting chat", http(base + "/api/chat?t=" + token, {"Origin": "http://evil.example", "Content-Type": "application/json"}, "POST", b'{"text":"forged"}')[0], 403),
        ("a cross-site fetch", http(base + "/api/chat?t=" + token, {"Sec-Fetch-Site": "cross-site"}, "POST", b'{"text":"forged"}')[0], 403),
        ("another host name (DNS rebinding)", http(base + "/?t=" + token, {"Host": "rebound.example:" + host.split(":")[1]})[0], 403),
        ("the right token", http(base + "/app.js?t=" + token)[0], 200),
    ]
    for what, got, want in checks:
        assert got == want, f"{what}: HTTP {got}, wanted {want}"
    return len(checks)


def bench(a, b, alice_url, files):
    """Figures for BENCHMARKS.md: verified-to-shown time of a 1 MB PNG,
    and the page's CPU with 1,000 chats in its timeline."""
    shown = []
    for i in range(5):
        path = png(os.path.join(files, f"bench-{i}.png"), 580, 580)
        send_file(a, path)
        name = os.path.basename(path)
        until(b, f"bench image {i} shown", lambda: (lambda e: e and e["imgs"] and e["imgs"][0]["w"] > 0)(file_entry(b, name)), 120)
        t = js(b, "for (const li of document.querySelectorAll('#timeline li.file')) {"
                  "  if (li.querySelector('.meta').textContent.includes(arguments[0])) {"
                  "    const i = li.querySelector('img.shown'); return [+i.dataset.loadedMs, +i.dataset.verifiedMs]; } }", name)
        shown.append(t[0] - t[1])
    size = os.path.getsize(path)
    base, token = alice_url.split("/?t=")
    before = len(chats(b))
    for i in range(1000):
        body = json.dumps({"text": f"bench chat {i}: grid {i % 40}, all clear"}).encode()
        code = http(base + "/api/chat?t=" + token, {"Content-Type": "application/json"}, "POST", body)[0]
        assert code == 204, f"chat {i}: HTTP {code}"
    until(b, "1,000 chats at bob", lambda: len(chats(b)) >= before + 1000, 300)
    time.sleep(2)
    b.execute_cdp_cmd("Performance.enable", {})
    def task():
        return {m["name"]: m["value"] for m in b.execute_cdp_cmd("Performance.getMetrics", {})["metrics"]}
    m0, t0 = task(), time.time()
    time.sleep(10)
    m1, t1 = task(), time.time()
    cpu = (m1["TaskDuration"] - m0["TaskDuration"]) / (t1 - t0)
    heap = m1["JSHeapUsedSize"] / 1e6
    nodes = js(b, "return document.getElementsByTagName('*').length")
    print(f"BENCH image of {size} bytes, verified to shown (ms): " + ", ".join(str(x) for x in shown))
    print(f"BENCH page with {len(chats(b))} chats: {cpu * 100:.2f} % of a core idle over 10 s, JS heap {heap:.1f} MB, {nodes} elements")


def main():
    cfg = json.load(open(sys.argv[1]))
    urls, files, shots = cfg["urls"], cfg["files"], cfg["screenshots"]
    png_path = png(os.path.join(files, "survey.png"), 320, 240, noise=False)
    evil_png = png(os.path.join(files, '<img src=x onerror="window.__pwned=1">.png'), 16, 16)
    svg = os.path.join(files, "evil.svg")
    with open(svg, "w") as f:
        f.write('<svg xmlns="http://www.w3.org/2000/svg" onload="window.__pwned=1"><script>window.__pwned=1</script></svg>')
    names = ["alice", "bob", "carol"]
    d = {n: browser(1280, 860) for n in names}
    try:
        for n in names:
            d[n].get(urls[n])
        for n in names:
            until(d[n], f"{n}'s page in the group", lambda n=n: "epoch" in d[n].find_element(By.ID, "state").text)
            until(d[n], f"{n}: XMPP up", lambda n=n: d[n].find_element(By.ID, "xmpp").text == "XMPP up")
        a, b, c = d["alice"], d["bob"], d["carol"]
        assert "t=" not in a.current_url, "the token left the address bar"
        until(a, "bob and carol in alice's member list", lambda: {"bob", "carol"} <= set(members(a)))

        # Chat typed in one page appears in the others.
        say(a, "hello from alice")
        for n in ["bob", "carol"]:
            m = until(d[n], f"alice's chat at {n}", lambda n=n: has_chat(d[n], "hello from alice"))
            assert m["from"] == "alice" and not m["private"], m
            assert "multicast" in m["title"] or "XMPP" in m["title"], f"origin on hover: {m['title']!r}"

        # alice's post (--position): listed on every page with its age, and a geo: link.
        for n in names:
            p = until(d[n], f"alice's position at {n}", lambda n=n: next((p for p in positions(d[n]) if p["who"] == "alice"), None))
            assert p["where"] == "47.62050, -122.34930" and p["href"] == "geo:47.6205,-122.3493", p
            assert p["own"] == (n == "alice") and p["age"].endswith("ago"), p

        # Hostile chat is shown as text and runs nothing.
        evil = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=1"> <a href="javascript:window.__pwned=1">click</a> javascript:window.__pwned=1'
        say(a, evil)
        until(b, "the hostile chat at bob", lambda: has_chat(b, evil))
        time.sleep(0.5)
        no_script_ran(b, "bob")
        no_script_ran(a, "alice")

        # A PNG from alice's file input is displayed at bob's, progress 100 %.
        send_file(a, png_path)
        name = os.path.basename(png_path)
        f = until(b, "the PNG shown at bob", lambda: (lambda e: e if e and e["imgs"] and e["imgs"][0]["complete"] and e["imgs"][0]["w"] > 0 else None)(file_entry(b, name)))
        assert f["state"] == "received" and f["progress"] == 100 and f["kind"] == "image", f
        mine = until(a, "alice's PNG sent", lambda: (lambda e: e if e and e["state"] == "sent" else None)(file_entry(a, name)))
        assert mine["progress"] == 100, mine
        shown_at = time.time()

        # A hostile file name is text; an SVG with script is a download only.
        send_file(a, evil_png)
        evil_name = os.path.basename(evil_png)
        until(b, "the hostile-named PNG at bob", lambda: (lambda e: e and e["state"] == "received")(file_entry(b, evil_name)))
        send_file(a, svg)
        s = until(b, "the SVG at bob", lambda: (lambda e: e if e and e["state"] == "received" else None)(file_entry(b, os.path.basename(svg))))
        assert s["kind"] == "download" and not s["imgs"] and s["frames"] == 0 and s["link"], f"the SVG must be a download only: {s}"
        served = js(b, "return fetch('/files/' + encodeURIComponent(arguments[0])).then(r => [r.headers.get('content-type'), r.headers.get('content-disposition'), r.headers.get('content-security-policy')])", s["id"])
        assert served[0] == "application/octet-stream" and served[1].startswith("attachment"), served
        assert "sandbox" in served[2], served
        time.sleep(0.5)
        no_script_ran(b, "bob")

        # A private message reaches only its recipient's page.
        choose(a, ["bob"])
        say(a, "for bob only")
        m = until(b, "the private message at bob", lambda: has_chat(b, "for bob only"))
        assert m["private"], m
        time.sleep(3)
        assert not has_chat(c, "for bob only"), "carol's page shows a message for bob only"

        # A file for bob only: shown at bob's (text, inline), "bob has it" at
        # alice's from his signed receipt; carol's page never names it.
        report = os.path.join(files, "casualties.txt")
        with open(report, "w") as f:
            f.write("Sector 4: two walking wounded, one stretcher case.\n")
        send_file(a, report)
        r = until(b, "the file for bob at bob", lambda: (lambda e: e if e and e["state"] == "received" else None)(file_entry(b, "casualties.txt")))
        assert r["kind"] == "text" and r["frames"] == 1, r
        until(a, "bob's receipt at alice", lambda: (lambda e: e and "bob has it" in e["meta"])(file_entry(a, "casualties.txt")))
        until(c, "carol told a file for others went by", lambda: "a file for other members went by" in c.find_element(By.ID, "timeline").text)
        assert file_entry(c, "casualties.txt") is None, "carol's page names bob's file"
        choose(a, [])

        # An HTML page with script is a download too.
        page = os.path.join(files, "notes.html")
        with open(page, "w") as f:
            f.write("<html><body><script>parent.__pwned=1</script>notes</body></html>")
        send_file(a, page)
        h = until(b, "the HTML at bob", lambda: (lambda e: e if e and e["state"] == "received" else None)(file_entry(b, "notes.html")))
        assert h["kind"] == "download" and h["frames"] == 0 and not h["imgs"] and h["link"], h
        no_script_ran(b, "bob")

        # Screenshots: desktop and phone width.
        if shots:
            say(a, "Sector 4 is clear; moving to the river crossing")
            until(b, "the last chat at bob", lambda: has_chat(b, "Sector 4 is clear; moving to the river crossing"))
            time.sleep(0.5)
            b.save_screenshot(os.path.join(shots, "web-desktop.png"))
            b.set_window_size(390, 844)
            time.sleep(0.5)
            b.save_screenshot(os.path.join(shots, "web-phone.png"))
            wide = js(b, "return document.documentElement.scrollWidth")
            assert wide <= 390, f"the page is {wide} px wide on a 390 px phone"
            b.set_window_size(1280, 860)

        # The token guards everything.
        n = refusals(urls["alice"])

        # A member leaving shows in the others' member lists.
        c.find_element(By.ID, "leave").click()
        until(a, "carol gone from alice's member list", lambda: "carol" not in members(a))
        until(c, "carol's page shows she left", lambda: c.find_element(By.ID, "text").get_attribute("disabled") is not None)
        no_script_ran(a, "alice")
        if cfg.get("bench"):
            bench(a, b, urls["alice"], files)
        print(f"OK: chat, positions, hostile text, PNG shown (progress 100 %), SVG and HTML as downloads, private message, a file for bob only with his receipt, {n} request checks, leave")
        return 0
    except AssertionError as e:
        print(f"FAILED: {e}")
        for n in names:
            try:
                print(f"--- {n}'s timeline:\n" + d[n].find_element(By.ID, "timeline").text[-3000:])
            except Exception:  # noqa: BLE001 (diagnostics only)
                pass
        return 1
    finally:
        for x in d.values():
            x.quit()


if __name__ == "__main__":
    sys.exit(main())
