#!/bin/bash
echo "intro background ran" > /tmp/tutorial-intro.txt
