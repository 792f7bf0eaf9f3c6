#!/bin/bash
grep -qx HELLO /workspace/loud.txt 2>/dev/null || { echo "loud.txt should hold HELLO."; exit 1; }
