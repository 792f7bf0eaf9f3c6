#!/bin/bash
cat "$@" | wc -l
