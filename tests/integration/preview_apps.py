"""Programs the preview tests run inside a sandbox (standard library only)."""

HTTP_APP = r"""
import hashlib, json, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes

    def log_message(self, *args):
        pass

    def reply(self, status, body, ctype="application/json", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        digest, size = hashlib.sha256(), 0
        keep = bytearray()
        while size < n:
            chunk = self.rfile.read(min(65536, n - size))
            if not chunk:
                break
            size += len(chunk)
            digest.update(chunk)
            if len(keep) < 4096:
                keep += chunk[: 4096 - len(keep)]
        return size, digest.hexdigest(), bytes(keep)

    def handle_any(self):
        path, _, query = self.path.partition("?")
        if path == "/redirect":
            return self.reply(302, b"", extra=[("Location", "/echo?from=redirect")])
        if path.startswith("/status/"):
            return self.reply(int(path[8:]), b"status body", "text/plain")
        if path == "/download":
            size = int(query.split("=")[1])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            if self.command == "HEAD":
                return
            block = b"x" * 65536
            while size > 0:
                self.wfile.write(block[:size])
                size -= len(block)
            return
        if path in ("/chunked", "/sse"):
            self.send_response(200)
            ctype = "text/event-stream" if path == "/sse" else "text/plain"
            self.send_header("Content-Type", ctype)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            for i in range(3):
                data = (f"data: event{i}\n\n" if path == "/sse" else f"part{i};").encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
                if path == "/sse":
                    time.sleep(0.5)
            self.wfile.write(b"0\r\n\r\n")
            return
        size, digest, head = self.read_body()
        body = json.dumps({
            "method": self.command, "path": path, "query": query,
            "headers": [[k.lower(), v] for k, v in self.headers.items()],
            "size": size, "sha256": digest, "body": head.decode("latin-1"),
        }).encode()
        self.reply(200, body, extra=[("Set-Cookie", "app=1; Path=/"), ("X-App", "yes")])

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = handle_any

ThreadingHTTPServer.allow_reuse_address = True
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""

# A minimal RFC 6455 echo server: text stays text, binary stays binary, the first
# offered subprotocol of "chat.v2" or "chat.v1" is chosen, close codes come back.
WS_APP = r"""
import asyncio, base64, hashlib, struct, sys

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

async def read_frame(reader):
    b1, b2 = await reader.readexactly(2)
    opcode, masked, n = b1 & 0x0F, b2 & 0x80, b2 & 0x7F
    if n == 126:
        n = struct.unpack(">H", await reader.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack(">Q", await reader.readexactly(8))[0]
    mask = await reader.readexactly(4) if masked else b"\0\0\0\0"
    data = bytearray(await reader.readexactly(n))
    for i in range(n):
        data[i] ^= mask[i % 4]
    return opcode, bytes(data)

def frame(opcode, data):
    n = len(data)
    if n < 126:
        head = bytes([0x80 | opcode, n])
    elif n < 65536:
        head = bytes([0x80 | opcode, 126]) + struct.pack(">H", n)
    else:
        head = bytes([0x80 | opcode, 127]) + struct.pack(">Q", n)
    return head + data

async def handle(reader, writer):
    request = (await reader.readuntil(b"\r\n\r\n")).decode()
    lines = request.split("\r\n")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    key = headers["sec-websocket-key"].encode()
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
    offered = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    chosen = next((p for p in offered if p in ("chat.v2", "chat.v1")), None)
    response = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + "\r\n")
    if chosen:
        response += "Sec-WebSocket-Protocol: " + chosen + "\r\n"
    writer.write((response + "\r\n").encode())
    hello = "hello " + lines[0].split()[1] + " host=" + headers.get("host", "")
    writer.write(frame(1, hello.encode()))
    try:
        while True:
            opcode, data = await read_frame(reader)
            if opcode == 8:
                writer.write(frame(8, data[:2] or struct.pack(">H", 1000)))
                await writer.drain()
                break
            if opcode == 9:
                writer.write(frame(10, data))
            elif opcode in (1, 2):
                if data == b"close-4321":
                    writer.write(frame(8, struct.pack(">H", 4321)))
                    await writer.drain()
                    break
                writer.write(frame(opcode, data))
            await writer.drain()
    except asyncio.IncompleteReadError:
        pass
    writer.close()

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()

asyncio.run(main())
"""
