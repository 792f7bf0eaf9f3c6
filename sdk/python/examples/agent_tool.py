"""An agent tool loop: a `run_python` tool an LLM framework can call.

The tool runs code in a persistent interpreter in a sandbox and returns what a model
can read: text (stdout, the value of the last expression, the error) and images
(PNG charts, base64). `TOOL_SPEC` is the JSON schema most function-calling APIs take
(OpenAI, Anthropic, LangChain ...). Without a model at hand, `main()` plays a short
scripted conversation through the same loop.

    SANDBOX_IDE_URL=... SANDBOX_IDE_TOKEN=... python agent_tool.py --out charts/
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path
from typing import Any

from sandbox_ide import CodeContext, Sandbox

TOOL_SPEC = {
    "name": "run_python",
    "description": "Run Python code in a persistent sandboxed interpreter (numpy, pandas, "
    "matplotlib available). State is kept between calls. Returns stdout, the value of "
    "the last expression, errors, and charts as PNG images.",
    "parameters": {
        "type": "object",
        "properties": {"code": {"type": "string", "description": "Python code to run"}},
        "required": ["code"],
    },
}


class PythonTool:
    """Holds one sandbox and one interpreter context for a conversation."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.context: CodeContext = sandbox.create_code_context("python")

    def __call__(self, code: str) -> dict[str, Any]:
        execution = self.sandbox.run_code(code, context=self.context, timeout=120)
        parts = []
        if execution.stdout:
            parts.append(execution.stdout.rstrip())
        if execution.stderr:
            parts.append("[stderr]\n" + execution.stderr.rstrip())
        images = []
        for result in execution.results:
            if result.png:
                images.append(base64.b64encode(result.png).decode())
            elif result.is_main_result and result.text is not None:
                parts.append(result.text)
        if execution.error:
            parts.append(f"[error] {execution.error.name}: {execution.error.value}")
        return {"text": "\n".join(parts) or "(no output)", "images": images}


SCRIPTED_CALLS = [  # what a model might ask for, in order
    "import numpy as np\nprimes = [n for n in range(2, 60) if all(n % d for d in range(2, n))]\n"
    "len(primes), sum(primes)",
    "import matplotlib.pyplot as plt\nplt.figure(figsize=(4, 3))\n"
    "plt.bar(range(len(primes)), primes)\nplt.title('primes below 60')\nplt.show()",
    "primes[100]",  # a mistake the model gets to see
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sandbox", default="agent-tool-example")
    parser.add_argument("--out", type=Path, default=Path("agent-output"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    with Sandbox.get_or_create(args.sandbox) as sandbox:
        tool = PythonTool(sandbox)
        print("tool spec:", json.dumps(TOOL_SPEC)[:80], "...")
        for turn, code in enumerate(SCRIPTED_CALLS, 1):
            reply = tool(code)  # a framework would put this in the next model message
            print(f"--- call {turn}: {code.splitlines()[-1]}")
            print(reply["text"])
            for i, image in enumerate(reply["images"]):
                path = args.out / f"call{turn}-{i}.png"
                path.write_bytes(base64.b64decode(image))
                print(f"[image] {path} ({path.stat().st_size} bytes)")
        sandbox.remove_code_context(tool.context)
    return 0


if __name__ == "__main__":
    sys.exit(main())
