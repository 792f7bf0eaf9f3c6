#!/bin/bash
[ -f /tmp/step3-ready ] || { echo "The step is still being prepared; try again in a moment."; exit 1; }
[ "$(cat /workspace/count.txt 2>/dev/null)" = 2 ] || { echo "count.txt should hold 2."; exit 1; }
