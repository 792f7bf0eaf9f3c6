"""Entry point: ``python3 -m sandbox_agent --socket PATH``."""

from __future__ import annotations

import argparse
import asyncio

from .server import serve


def main() -> None:
    parser = argparse.ArgumentParser(prog="sandbox_agent")
    parser.add_argument("--socket", default="/run/sandbox-agent/agent.sock")
    parser.add_argument("--tcp", default="", help="also listen on HOST:PORT (remote engines)")
    args = parser.parse_args()
    asyncio.run(serve(args.socket, args.tcp))


if __name__ == "__main__":
    main()
