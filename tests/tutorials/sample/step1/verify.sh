#!/bin/bash
if [ ! -f /workspace/greeting.txt ]; then
  echo "greeting.txt is missing: create it in /workspace."
  exit 1
fi
grep -qx hello /workspace/greeting.txt || { echo "greeting.txt should hold the word hello."; exit 1; }
